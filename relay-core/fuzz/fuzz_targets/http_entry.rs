#![no_main]
//! Arbitrary bytes never panic the HTTP proxy request parser or its helpers; every prefix of a
//! complete head is `Partial`; a rewritten head carries no `Proxy-*` header.
use libfuzzer_sys::fuzz_target;
use relay_core::Decoded;
use relay_core::entry::detect;
use relay_core::entry::http::{HttpRequest, MAX_HEAD, base64_decode};

fuzz_target!(|data: &[u8]| {
    let _ = detect(data);
    let mut scratch = [0u8; MAX_HEAD];
    let _ = base64_decode(data, &mut scratch);
    if let Ok(Decoded::Complete { value, consumed }) = HttpRequest::decode(data) {
        assert!(consumed <= data.len());
        for cut in [0, consumed / 2, consumed - 1] {
            assert!(matches!(
                HttpRequest::decode(&data[..cut]),
                Ok(Decoded::Partial { .. })
            ));
        }
        let _ = value.proxy_credentials(&mut scratch);
        let mut out = vec![0u8; value.forward_head_len()];
        let n = value
            .write_forward_head(&mut out)
            .expect("sized by forward_head_len");
        assert_eq!(n, out.len());
        for h in value.headers() {
            assert!(h.line.len() <= consumed);
        }
    }
});
