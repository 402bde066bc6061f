//! `tongban_sync::wire::Message::decode` on arbitrary bytes: it must return a
//! message or an error, never panic; a message it returns must encode and decode
//! back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tongban_sync::wire::{Message, frame_len};

fuzz_target!(|data: &[u8]| {
    // The stream splitter must not panic either, and must agree with the decoder
    // about where a frame ends.
    let _ = frame_len(data);
    if let Ok(message) = Message::decode(data) {
        let encoded = match message.encode() {
            Ok(encoded) => encoded,
            Err(err) => panic!("a decoded message does not encode: {err}"),
        };
        assert_eq!(encoded.len(), data.len(), "re-encoding changed the frame length");
        match Message::decode(&encoded) {
            Ok(again) => assert_eq!(again, message, "the round trip changed the message"),
            Err(err) => panic!("a re-encoded message does not decode: {err}"),
        }
    }
});
