//! The protocol against bytes the JS client and samod write, and the decoder against hostile
//! input.

use super::encode::CborWriter;
use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A CBOR value for hand-built fixtures, written the way cbor-x writes it.
enum V {
    Map(Vec<(&'static str, V)>),
    Array(Vec<V>),
    Text(&'static str),
    Bytes(Vec<u8>),
    Uint(u64),
    Float(f64),
    Bool(bool),
    Undefined,
}

/// Writes `v` in cbor-x's style: every map length as a uint16 (`b9 00 NN`), numbers that are
/// floats as float64.
fn cborx(v: &V, out: &mut Vec<u8>) {
    fn head(major: u8, len: usize, out: &mut Vec<u8>) {
        let mut w = CborWriter::default();
        w.len(major, len);
        out.extend_from_slice(&w.out);
    }
    match v {
        V::Map(entries) => {
            out.push(0xb9);
            out.extend_from_slice(&u16::try_from(entries.len()).unwrap().to_be_bytes());
            for (k, v) in entries {
                cborx(&V::Text(k), out);
                cborx(v, out);
            }
        }
        V::Array(items) => {
            head(4, items.len(), out);
            items.iter().for_each(|i| cborx(i, out));
        }
        V::Text(s) => {
            head(3, s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        V::Bytes(b) => {
            head(2, b.len(), out);
            out.extend_from_slice(b);
        }
        V::Uint(n) => {
            let mut w = CborWriter::default();
            w.uint(*n);
            out.extend_from_slice(&w.out);
        }
        V::Float(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        V::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        V::Undefined => out.push(0xf7),
    }
}

fn bytes_of(v: V) -> Vec<u8> {
    let mut out = Vec::new();
    cborx(&v, &mut out);
    out
}

const DOC: &str = "2ZorNZr7taHimrYix2h95fJcSEQh";

fn every_message_type() -> Vec<WireMessage> {
    let mut new_heads = BTreeMap::new();
    new_heads.insert(
        "storage-a".to_owned(),
        RemoteHeads {
            heads: vec!["3HJ1Dr6R3k".to_owned(), "8s4UuZ7G2m".to_owned()],
            timestamp: 1_764_037_000_123,
        },
    );
    new_heads.insert("storage-b".to_owned(), RemoteHeads::default());
    vec![
        WireMessage::Join {
            sender_id: "client-1".to_owned(),
            supported_protocol_versions: Some(vec!["1".to_owned()]),
            peer_metadata: Some(PeerMetadata {
                storage_id: Some("client-storage".to_owned()),
                is_ephemeral: false,
            }),
        },
        WireMessage::Join {
            sender_id: "client-2".to_owned(),
            supported_protocol_versions: None,
            peer_metadata: None,
        },
        WireMessage::Peer {
            sender_id: "server".to_owned(),
            target_id: "client-1".to_owned(),
            selected_protocol_version: "1".to_owned(),
            peer_metadata: Some(PeerMetadata {
                storage_id: Some("server-storage".to_owned()),
                is_ephemeral: false,
            }),
        },
        WireMessage::Peer {
            sender_id: "server".to_owned(),
            target_id: "client-1".to_owned(),
            selected_protocol_version: "1".to_owned(),
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: true,
            }),
        },
        WireMessage::Error {
            sender_id: Some("server".to_owned()),
            target_id: Some("client-1".to_owned()),
            message: "token expired".to_owned(),
        },
        WireMessage::Error {
            sender_id: None,
            target_id: None,
            message: "unsupported protocol version".to_owned(),
        },
        WireMessage::Leave {
            sender_id: "client-1".to_owned(),
        },
        WireMessage::Request {
            sender_id: "client-1".to_owned(),
            target_id: "server".to_owned(),
            document_id: DOC.to_owned(),
            data: vec![0x42, 0x00, 0xff],
        },
        WireMessage::Sync {
            sender_id: "server".to_owned(),
            target_id: "client-1".to_owned(),
            document_id: DOC.to_owned(),
            data: (0..=255).collect(),
        },
        WireMessage::DocUnavailable {
            sender_id: "server".to_owned(),
            target_id: "client-1".to_owned(),
            document_id: "not-a-real-id".to_owned(),
        },
        WireMessage::Ephemeral {
            sender_id: "server".to_owned(),
            target_id: "client-1".to_owned(),
            count: 70_000,
            session_id: "s-1".to_owned(),
            document_id: DOC.to_owned(),
            data: vec![0xa1, 0x61, 0x6b, 0x01],
        },
        WireMessage::RemoteSubscriptionChange {
            sender_id: "client-1".to_owned(),
            target_id: "server".to_owned(),
            add: Some(vec!["storage-a".to_owned()]),
            remove: vec!["storage-b".to_owned()],
        },
        WireMessage::RemoteSubscriptionChange {
            sender_id: "client-1".to_owned(),
            target_id: "server".to_owned(),
            add: None,
            remove: vec![],
        },
        WireMessage::RemoteHeadsChanged {
            sender_id: "server".to_owned(),
            target_id: "client-1".to_owned(),
            document_id: DOC.to_owned(),
            new_heads,
        },
        WireMessage::Unknown {
            message_type: "future-thing".to_owned(),
            sender_id: Some("client-1".to_owned()),
            target_id: None,
        },
    ]
}

#[test]
fn every_message_type_round_trips() {
    let messages = every_message_type();
    let types: std::collections::BTreeSet<&str> =
        messages.iter().map(WireMessage::message_type).collect();
    assert_eq!(types.len(), 11, "one test message per variant: {types:?}");
    for message in messages {
        let bytes = encode(&message);
        assert_eq!(decode(&bytes), Ok(message.clone()), "{message:?}");
    }
}

#[test]
fn encoding_uses_the_keys_and_kinds_the_js_side_reads() {
    let sync = encode(&WireMessage::Sync {
        sender_id: "s".to_owned(),
        target_id: "t".to_owned(),
        document_id: DOC.to_owned(),
        data: vec![1, 2, 3],
    });
    let value: ciborium::Value = ciborium::from_reader(&sync[..]).unwrap();
    let entries = value.as_map().unwrap();
    let get = |k: &str| {
        entries
            .iter()
            .find(|(key, _)| key.as_text() == Some(k))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("type"), Some(ciborium::Value::Text("sync".into())));
    assert_eq!(get("documentId"), Some(ciborium::Value::Text(DOC.into())));
    assert_eq!(get("data"), Some(ciborium::Value::Bytes(vec![1, 2, 3])));

    let peer = encode(&WireMessage::Peer {
        sender_id: "server".to_owned(),
        target_id: "c".to_owned(),
        selected_protocol_version: "1".to_owned(),
        peer_metadata: Some(PeerMetadata {
            storage_id: Some("st".to_owned()),
            is_ephemeral: false,
        }),
    });
    let value: ciborium::Value = ciborium::from_reader(&peer[..]).unwrap();
    let metadata = value
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_text() == Some("peerMetadata"))
        .map(|(_, v)| v.clone())
        .expect("peerMetadata key");
    assert_eq!(
        metadata,
        ciborium::Value::Map(vec![
            ("storageId".into(), "st".into()),
            ("isEphemeral".into(), false.into()),
        ])
    );
}

#[test]
fn decodes_a_join_as_cbor_x_writes_it_for_a_client_without_storage() {
    // cbor-x 1.6 (`new Encoder({ tagUint8Array: false, useRecords: false })`) encoding
    // {type: "join", senderId: "peer-a", peerMetadata: {storageId: undefined,
    // isEphemeral: true}, supportedProtocolVersions: ["1"]}.
    let bytes = hex(concat!(
        "b900046474797065646a6f696e6873656e646572496466706565722d61",
        "6c706565724d65746164617461b900026973746f726167654964f76b69",
        "73457068656d6572616cf57819737570706f7274656450726f746f636f",
        "6c56657273696f6e73816131"
    ));
    assert_eq!(
        decode(&bytes),
        Ok(WireMessage::Join {
            sender_id: "peer-a".to_owned(),
            supported_protocol_versions: Some(vec!["1".to_owned()]),
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: true,
            }),
        })
    );
}

#[test]
fn decodes_remote_heads_with_a_float_timestamp_as_cbor_x_writes_it() {
    // cbor-x writing a Date.now() value (1795573265839) as float64 inside newHeads.
    let bytes = hex(concat!(
        "b9000564747970657472656d6f74652d68656164732d6368616e676564",
        "6873656e6465724964616168746172676574496461626a646f63756d65",
        "6e7449646164686e65774865616473b90001627374b900026568656164",
        "73816268316974696d657374616d70fb427a21081b5af000"
    ));
    let Ok(WireMessage::RemoteHeadsChanged { new_heads, .. }) = decode(&bytes) else {
        panic!("not decoded as remote-heads-changed");
    };
    let entry = &new_heads["st"];
    assert_eq!(entry.heads, vec!["h1".to_owned()]);
    assert_eq!(entry.timestamp, 1_795_573_265_839);
}

#[test]
fn decodes_a_subscription_change_whose_remove_is_undefined() {
    let bytes = hex(concat!(
        "b900056474797065781a72656d6f74652d737562736372697074696f6e",
        "2d6368616e67656873656e6465724964616168746172676574496461",
        "6263616464816273746672656d6f7665f7"
    ));
    assert_eq!(
        decode(&bytes),
        Ok(WireMessage::RemoteSubscriptionChange {
            sender_id: "a".to_owned(),
            target_id: "b".to_owned(),
            add: Some(vec!["st".to_owned()]),
            remove: vec![],
        })
    );
}

#[test]
fn decodes_hand_built_ephemeral_with_float_count_and_binary_document_id() {
    let id_bytes: [u8; 16] =
        *uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef).as_bytes();
    let bytes = bytes_of(V::Map(vec![
        ("type", V::Text("ephemeral")),
        ("senderId", V::Text("client-1")),
        ("targetId", V::Text("server")),
        ("count", V::Float(4_294_967_296.0)),
        ("sessionId", V::Text("abc")),
        ("documentId", V::Bytes(id_bytes.to_vec())),
        ("data", V::Bytes(vec![0xf6])),
        ("someFutureField", V::Array(vec![V::Uint(1), V::Undefined])),
    ]));
    assert_eq!(&bytes[..3], &[0xb9, 0x00, 0x08]);
    assert_eq!(
        decode(&bytes),
        Ok(WireMessage::Ephemeral {
            sender_id: "client-1".to_owned(),
            target_id: "server".to_owned(),
            count: 4_294_967_296,
            session_id: "abc".to_owned(),
            document_id: DocumentId(id_bytes).to_string(),
            data: vec![0xf6],
        })
    );
}

#[test]
fn reads_the_spec_metadata_key_and_defaults_is_ephemeral_to_false() {
    let bytes = bytes_of(V::Map(vec![
        ("type", V::Text("join")),
        ("senderId", V::Text("c")),
        ("supportedProtocolVersions", V::Undefined),
        (
            "metadata",
            V::Map(vec![
                ("storageId", V::Text("st")),
                ("laterFlag", V::Bool(true)),
            ]),
        ),
    ]));
    assert_eq!(
        decode(&bytes),
        Ok(WireMessage::Join {
            sender_id: "c".to_owned(),
            supported_protocol_versions: None,
            peer_metadata: Some(PeerMetadata {
                storage_id: Some("st".to_owned()),
                is_ephemeral: false,
            }),
        })
    );
}

#[test]
fn refuses_malformed_fields() {
    let cases: Vec<(V, &str)> = vec![
        (
            V::Map(vec![
                ("type", V::Text("ephemeral")),
                ("count", V::Float(-1.0)),
            ]),
            "negative count",
        ),
        (
            V::Map(vec![
                ("type", V::Text("ephemeral")),
                ("count", V::Float(f64::NAN)),
            ]),
            "NaN count",
        ),
        (
            V::Map(vec![
                ("type", V::Text("sync")),
                ("data", V::Text("not bytes")),
            ]),
            "text data",
        ),
        (
            V::Map(vec![
                ("type", V::Text("sync")),
                ("documentId", V::Bytes(vec![1; 5])),
            ]),
            "5-byte document id",
        ),
        (
            V::Map(vec![("type", V::Text("sync")), ("type", V::Text("sync"))]),
            "duplicate key",
        ),
        (
            V::Array(vec![V::Text("type"), V::Text("sync")]),
            "array at top level",
        ),
        (V::Text("sync"), "text at top level"),
        (
            V::Map(vec![("type", V::Text("join")), ("senderId", V::Uint(7))]),
            "numeric sender",
        ),
        (
            V::Map(vec![
                ("type", V::Text("join")),
                ("senderId", V::Text("c")),
                (
                    "peerMetadata",
                    V::Map(vec![("isEphemeral", V::Text("yes"))]),
                ),
            ]),
            "text isEphemeral",
        ),
    ];
    for (value, what) in cases {
        let bytes = bytes_of(value);
        assert!(
            matches!(decode(&bytes), Err(ProtocolError::Invalid(_))),
            "{what}: {:?}",
            decode(&bytes)
        );
    }
}

#[test]
fn names_the_missing_field() {
    let bytes = bytes_of(V::Map(vec![
        ("type", V::Text("sync")),
        ("senderId", V::Text("c")),
        ("targetId", V::Text("s")),
        ("documentId", V::Text(DOC)),
        ("data", V::Undefined),
    ]));
    assert_eq!(
        decode(&bytes),
        Err(ProtocolError::MissingField {
            message_type: "sync",
            field: "data"
        })
    );
    let bytes = bytes_of(V::Map(vec![("senderId", V::Text("c"))]));
    assert_eq!(decode(&bytes), Err(ProtocolError::MissingType));
}

#[test]
fn every_truncation_of_every_message_is_an_error() {
    for message in every_message_type() {
        let bytes = encode(&message);
        for end in 0..bytes.len() {
            assert!(
                decode(&bytes[..end]).is_err(),
                "{} truncated to {end} bytes decoded",
                message.message_type()
            );
        }
    }
    let bytes = encode(&every_message_type()[0]);
    assert_eq!(
        decode(&bytes[..bytes.len() - 1]),
        Err(ProtocolError::Truncated)
    );
}

#[test]
fn garbage_and_trailing_bytes_are_errors() {
    for garbage in [
        &b""[..],
        &[0xff],
        &[0x1f],
        &[0xb9, 0xff, 0xff],
        &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0xfc],
        b"{\"type\":\"sync\"}",
    ] {
        assert!(decode(garbage).is_err(), "{garbage:?}");
    }
    let mut bytes = encode(&every_message_type()[6]);
    bytes.push(0x00);
    assert!(matches!(decode(&bytes), Err(ProtocolError::Invalid(_))));
}

#[test]
fn refuses_input_over_the_limit_before_parsing() {
    let message = WireMessage::Sync {
        sender_id: "c".to_owned(),
        target_id: "s".to_owned(),
        document_id: DOC.to_owned(),
        data: vec![7; 2048],
    };
    let bytes = encode(&message);
    assert_eq!(decode_bounded(&bytes, bytes.len()), Ok(message));
    assert_eq!(
        decode_bounded(&bytes, 2048),
        Err(ProtocolError::TooLarge {
            len: bytes.len(),
            max: 2048
        })
    );
    // Garbage over the limit is refused as too large: it was never looked at.
    let big = vec![0xff; DEFAULT_MAX_MESSAGE_BYTES + 1];
    assert!(matches!(decode(&big), Err(ProtocolError::TooLarge { .. })));
}

#[test]
fn refuses_absurd_nesting_and_overlong_lists() {
    // {"type": "leave", "x": [[[[ … 100,000 levels … 0 ]]]]}
    let mut bytes = vec![0xa2, 0x64];
    bytes.extend_from_slice(b"type");
    bytes.push(0x65);
    bytes.extend_from_slice(b"leave");
    bytes.extend_from_slice(&[0x61, b'x']);
    bytes.extend(std::iter::repeat_n(0x81, 100_000));
    bytes.push(0x00);
    assert_eq!(decode(&bytes), Err(ProtocolError::TooDeep));

    let versions: Vec<V> = (0..=MAX_LIST_ITEMS).map(|_| V::Text("1")).collect();
    let bytes = bytes_of(V::Map(vec![
        ("type", V::Text("join")),
        ("senderId", V::Text("c")),
        ("supportedProtocolVersions", V::Array(versions)),
    ]));
    assert!(matches!(decode(&bytes), Err(ProtocolError::Invalid(_))));
}

#[test]
fn a_long_ignored_field_is_skipped_without_error() {
    let items: Vec<V> = (0..10_000).map(V::Uint).collect();
    let bytes = bytes_of(V::Map(vec![
        ("type", V::Text("leave")),
        ("senderId", V::Text("c")),
        ("extra", V::Array(items)),
    ]));
    assert_eq!(
        decode(&bytes),
        Ok(WireMessage::Leave {
            sender_id: "c".to_owned()
        })
    );
}

#[test]
fn numbers_past_32_bits_are_written_as_cbor_x_writes_them() {
    let heads = |timestamp| WireMessage::RemoteHeadsChanged {
        sender_id: "s".to_owned(),
        target_id: "t".to_owned(),
        document_id: DOC.to_owned(),
        new_heads: BTreeMap::from([(
            "st".to_owned(),
            RemoteHeads {
                heads: vec![],
                timestamp,
            },
        )]),
    };
    // Date.now()-sized: float64, as in the cbor-x fixture above.
    let bytes = encode(&heads(1_795_573_265_839));
    assert!(bytes.ends_with(&hex("fb427a21081b5af000")), "{bytes:02x?}");
    assert_eq!(decode(&bytes), Ok(heads(1_795_573_265_839)));
    // Small: a plain integer.
    assert!(encode(&heads(70_000)).ends_with(&[0x1a, 0x00, 0x01, 0x11, 0x70]));
    // Past 2^53 a float would lose precision: a 64-bit integer.
    let huge = u64::MAX - 1;
    assert_eq!(decode(&encode(&heads(huge))), Ok(heads(huge)));
}

#[test]
fn protocol_version_one_is_selected_when_missing_or_listed() {
    assert_eq!(select_protocol_version(None), Some("1"));
    assert_eq!(
        select_protocol_version(Some(&["2".to_owned(), "1".to_owned()])),
        Some("1")
    );
    assert_eq!(select_protocol_version(Some(&["2".to_owned()])), None);
    assert_eq!(select_protocol_version(Some(&[])), None);
}

#[test]
fn accessors_report_addressing() {
    let sync = &every_message_type()[8];
    assert_eq!(sync.sender_id(), Some("server"));
    assert_eq!(sync.document_id(), Some(DOC));
    let join = &every_message_type()[0];
    assert_eq!(join.document_id(), None);
}

proptest! {
    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_messages(
        index in 0usize..15,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encode(&every_message_type()[index]);
        for (at, value) in flips {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        let _ = decode(&bytes);
    }
}
