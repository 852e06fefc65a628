//! ZDS messages as istio-cni's node agent sends them: decoded with their descriptors, every malformed packet
//! refused with its descriptors handed back, and a connection's snapshot stopping the Pods it left out.

use mesh_xds::proto::zds::{self, WorkloadRequest, workload_request::Payload};
use mesh_xds::zds::{Action, MAX_PACKET, PodInfo, Request, Session, ZdsError, ack, decode, hello, nack};
use prost::Message;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A descriptor stand-in: a number.
type Fd = u32;

fn packet(payload: Payload) -> Vec<u8> {
    WorkloadRequest { payload: Some(payload) }.encode_to_vec()
}

fn add(uid: &str) -> Vec<u8> {
    packet(Payload::Add(zds::AddWorkload {
        uid: uid.into(),
        workload_info: Some(zds::WorkloadInfo {
            name: "ledger-0".into(),
            namespace: "payments".into(),
            service_account: "ledger".into(),
        }),
    }))
}

#[test]
fn the_proxy_speaks_v1_and_acks_as_istio_expects() -> Result {
    // ZdsHello{version: V1}: field 1, varint 1.
    assert_eq!(hello(), [0x08, 0x01]);
    let ok = zds::WorkloadResponse::decode(ack().as_slice())?;
    assert_eq!(ok.payload, Some(zds::workload_response::Payload::Ack(zds::Ack { error: String::new() })));
    let failed = zds::WorkloadResponse::decode(nack("no such namespace").as_slice())?;
    assert_eq!(
        failed.payload,
        Some(zds::workload_response::Payload::Ack(zds::Ack { error: "no such namespace".into() }))
    );
    let empty = zds::WorkloadResponse::decode(nack("").as_slice())?;
    assert!(matches!(empty.payload, Some(zds::workload_response::Payload::Ack(a)) if !a.error.is_empty()));
    Ok(())
}

#[test]
fn requests_decode_with_their_namespace() -> Result {
    let request = decode::<Fd>(&add("uid-1"), vec![7], false).map_err(|r| r.error.to_string())?;
    let info = PodInfo { name: "ledger-0".into(), namespace: "payments".into(), service_account: "ledger".into() };
    assert_eq!(request, Request::Add { uid: "uid-1".into(), info: Some(info), netns: 7 });
    let keep = packet(Payload::Keep(zds::KeepWorkload { uid: "uid-1".into() }));
    assert_eq!(decode::<Fd>(&keep, vec![], false).map_err(|r| r.error)?, Request::Keep { uid: "uid-1".into() });
    let del = packet(Payload::Del(zds::DelWorkload { uid: "uid-1".into() }));
    assert_eq!(decode::<Fd>(&del, vec![], false).map_err(|r| r.error)?, Request::Del { uid: "uid-1".into() });
    let sent = packet(Payload::SnapshotSent(zds::SnapshotSent {}));
    assert_eq!(decode::<Fd>(&sent, vec![], false).map_err(|r| r.error)?, Request::SnapshotSent);
    Ok(())
}

#[test]
fn malformed_packets_are_refused_and_their_descriptors_handed_back() {
    let refused = |bytes: &[u8], fds: Vec<Fd>, truncated: bool| match decode(bytes, fds, truncated) {
        Ok(request) => panic!("accepted {request:?}"),
        Err(refused) => refused,
    };
    let r = refused(&add("uid-1"), vec![3], true);
    assert_eq!((r.error, r.descriptors), (ZdsError::Truncated, vec![3]));
    let r = refused(&vec![0; MAX_PACKET + 1], vec![], false);
    assert_eq!(r.error, ZdsError::Truncated);
    let r = refused(&[0xff, 0xff, 0xff], vec![4], false);
    assert!(matches!(r.error, ZdsError::Decode(_)) && r.descriptors == [4]);
    let r = refused(&WorkloadRequest { payload: None }.encode_to_vec(), vec![], false);
    assert_eq!(r.error, ZdsError::NoPayload);
    let r = refused(&add("uid-1"), vec![], false);
    assert_eq!(r.error, ZdsError::NoNamespace { uid: "uid-1".into() });
    let r = refused(&add("uid-1"), vec![5, 6], false);
    assert_eq!((r.error, r.descriptors), (ZdsError::Descriptors { request: "add", count: 2 }, vec![5, 6]));
    let del = packet(Payload::Del(zds::DelWorkload { uid: "uid-1".into() }));
    let r = refused(&del, vec![8], false);
    assert_eq!((r.error, r.descriptors), (ZdsError::Descriptors { request: "del", count: 1 }, vec![8]));
    let r = refused(&add(""), vec![9], false);
    assert_eq!((r.error, r.descriptors), (ZdsError::NoUid { request: "add" }, vec![9]));
}

#[test]
fn a_snapshot_stops_the_pods_it_left_out_once() -> Result {
    let served = ["a", "b", "c"].map(|uid| (uid.to_owned(), None));
    let mut session = Session::new(served);
    assert_eq!(session.apply::<Fd>(Request::Keep { uid: "a".into() })?, Action::Keep);
    assert_eq!(
        session.apply(Request::Add { uid: "d".into(), info: None, netns: 1 })?,
        Action::Serve { uid: "d".into(), info: None, netns: 1 }
    );
    // c is named, then deleted before the snapshot ends.
    session.apply::<Fd>(Request::Keep { uid: "c".into() })?;
    assert_eq!(session.apply::<Fd>(Request::Del { uid: "c".into() })?, Action::Stop(vec!["c".into()]));
    assert!(!session.snapshot_complete());
    assert_eq!(session.apply::<Fd>(Request::SnapshotSent)?, Action::Stop(vec!["b".into()]));
    assert!(session.snapshot_complete());
    let served: Vec<&str> = session.served().map(|(uid, _)| uid).collect();
    assert_eq!(served, ["a", "d"]);
    // A second SnapshotSent stops nothing; a keep for a Pod not served is refused; a del of one is a no-op.
    assert_eq!(session.apply::<Fd>(Request::SnapshotSent)?, Action::Stop(vec![]));
    assert_eq!(session.apply::<Fd>(Request::Keep { uid: "b".into() }), Err(ZdsError::UnknownKeep { uid: "b".into() }));
    assert_eq!(session.apply::<Fd>(Request::Del { uid: "zz".into() })?, Action::Stop(vec![]));
    // A Pod whose namespace could not be entered is not served.
    session.apply(Request::Add { uid: "e".into(), info: None, netns: 2 })?;
    session.failed("e");
    assert!(session.served().all(|(uid, _)| uid != "e"));
    Ok(())
}
