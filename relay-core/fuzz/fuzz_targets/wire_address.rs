#![no_main]
//! Arbitrary bytes never panic the address decoders; a decoded address re-encodes exactly.
use libfuzzer_sys::fuzz_target;
use relay_core::{Address, Decoded};

fuzz_target!(|data: &[u8]| {
    let _ = Address::decode_body(data);
    if let Ok(Decoded::Complete { value, consumed }) = Address::decode(data) {
        let mut out = [0u8; 300];
        let n = value.encode(&mut out).expect("a decoded address re-encodes");
        assert_eq!(&out[..n], &data[..consumed]);
    }
});
