#![no_main]
//! Arbitrary bytes never panic the request decoder; a decoded request re-encodes to its bytes.
use libfuzzer_sys::fuzz_target;
use relay_core::Decoded;
use relay_core::wire::Request;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Complete { value, consumed }) = Request::decode(data) {
        let mut out = vec![0u8; value.encoded_len()];
        let n = value.encode(&mut out).expect("a decoded request re-encodes");
        assert_eq!(&out[..n], &data[..consumed]);
    }
});
