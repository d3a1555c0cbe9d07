#![no_main]
//! Arbitrary bytes never panic the response decoder; a decoded response re-encodes to its bytes.
use libfuzzer_sys::fuzz_target;
use relay_core::Decoded;
use relay_core::wire::Response;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Complete { value, consumed }) = Response::decode(data) {
        let mut out = vec![0u8; value.encoded_len()];
        let n = value.encode(&mut out).expect("a decoded response re-encodes");
        assert_eq!(&out[..n], &data[..consumed]);
    }
});
