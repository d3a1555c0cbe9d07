#![no_main]
//! Arbitrary bytes never panic the feature decoder; a decoded feature re-encodes to a TLV that
//! decodes to the same feature.
use libfuzzer_sys::fuzz_target;
use relay_core::wire::Feature;

fuzz_target!(|data: &[u8]| {
    if let Ok((feature, _)) = Feature::decode(data) {
        let mut out = vec![0u8; feature.encoded_len()];
        let n = feature.encode(&mut out).expect("a decoded feature re-encodes");
        let (again, used) = Feature::decode(&out[..n]).expect("re-encoded feature decodes");
        assert_eq!(used, n);
        assert_eq!(again, feature);
    }
});
