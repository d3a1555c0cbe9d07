#![no_main]
//! Arbitrary bytes never panic the UDP framings; a decoded datagram re-encodes to the same bytes.
use libfuzzer_sys::fuzz_target;
use relay_core::Decoded;
use relay_core::udp::{Datagram, LengthFrame};

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Complete { value, consumed }) = LengthFrame::decode(data) {
        let mut out = vec![0u8; consumed];
        assert_eq!(
            LengthFrame::encode(value, &mut out).expect("re-encodes"),
            consumed
        );
        assert_eq!(&out[..], &data[..consumed]);
    }
    if let Ok(Decoded::Complete { value, consumed }) = Datagram::decode(data) {
        if !value.payload.is_empty() {
            let mut out = vec![0u8; consumed];
            assert_eq!(value.encode(&mut out).expect("re-encodes"), consumed);
            assert_eq!(&out[..2], &data[..2]);
            assert_eq!(&out[3..], &data[3..consumed]);
        }
    }
    if let Ok(d) = Datagram::decode_packet(data) {
        let mut out = vec![0u8; d.packet_len()];
        let n = d.encode_packet(&mut out).expect("re-encodes");
        assert_eq!(&out[3..n], &data[3..]);
    }
});
