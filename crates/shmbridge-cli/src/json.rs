//! The `--json` forms (the schemas are documented in `docs/CLI.md`; keep both in
//! step).

use serde_json::{Value, json};
use shmbridge::inspect::{Contents, SegmentInfo};
use shmbridge::record::{CreatorState, OwnershipRecord};
use shmbridge::sync::PrimitiveState;

use crate::show;

pub(crate) fn creator_state(state: CreatorState) -> &'static str {
    match state {
        CreatorState::Alive => "alive",
        CreatorState::Dead => "dead",
        CreatorState::Unknown => "unknown",
    }
}

pub(crate) fn record(record: &OwnershipRecord) -> Value {
    json!({
        "version": shmbridge::record::VERSION,
        "kind": record.kind().name(),
        "persistent": record.is_persistent(),
        "flags": record.flags(),
        "creator_pid": record.creator_pid(),
        "creator_start_ticks": record.creator_start(),
        "pid_namespace": record.pid_namespace(),
        "serial": record.serial(),
        "created": show::epoch_seconds(record.created()),
    })
}

pub(crate) fn segment(info: &SegmentInfo) -> Value {
    json!({
        "name": info.name,
        "kind": info.kind().map(|k| k.name()),
        "size": info.size,
        "mode": format!("{:04o}", info.mode),
        "uid": info.uid,
        "user": show::user(info.uid),
        "gid": info.gid,
        "group": show::group(info.gid),
        "modified": show::epoch_seconds(info.modified),
        "ours": info.is_ours(),
        "record": info.record.as_ref().map(record),
        "record_error": info.record_error,
        "creator": info.record.as_ref().map(|r| json!({
            "pid": r.creator_pid(),
            "state": info.creator.map(creator_state),
        })),
        "users": info.users,
    })
}

fn end(end: &shmbridge::channel::EndState) -> Value {
    json!({ "pid": end.pid, "closed": end.closed, "alive": end.alive })
}

pub(crate) fn contents(contents: &Contents) -> Value {
    match contents {
        Contents::Array(array) => {
            let layout = &array.layout;
            json!({
                "type": "array",
                "dtype": layout.dtype().typestr(),
                "shape": layout.shape(),
                "strides": layout.strides(),
                "order": crate::show::order(layout.order()),
                "data_offset": layout.data_offset(),
                "data_size": layout.data_size(),
                "generation": array.generation,
            })
        }
        Contents::Channel(channel) => json!({
            "type": "channel",
            "capacity": channel.capacity,
            "head": channel.head,
            "tail": channel.tail,
            "used": channel.used(),
            "messages": channel.messages,
            "producer": end(&channel.producer),
            "consumer": end(&channel.consumer),
        }),
        Contents::Primitive(state) => primitive(state),
        Contents::Unreadable(reason) => json!({ "type": "unreadable", "reason": reason }),
        _ => json!({ "type": "raw" }),
    }
}

fn primitive(state: &PrimitiveState) -> Value {
    match state {
        PrimitiveState::Event { set, auto_reset, sleepers } => {
            json!({ "type": "event", "set": set, "auto_reset": auto_reset, "sleepers": sleepers })
        }
        PrimitiveState::Semaphore { count, sleepers } => {
            json!({ "type": "semaphore", "count": count, "sleepers": sleepers })
        }
        PrimitiveState::Mutex { owner, owner_alive, sleepers } => json!({
            "type": "mutex", "locked": owner.is_some(), "owner": owner,
            "owner_alive": owner_alive, "sleepers": sleepers,
        }),
        PrimitiveState::SeqLock { sequence, writer, writer_alive, record_size } => json!({
            "type": "seqlock", "sequence": sequence, "writing": sequence % 2 == 1,
            "writer": writer, "writer_alive": writer_alive, "record_size": record_size,
        }),
        _ => json!({ "type": state.kind_name() }),
    }
}
