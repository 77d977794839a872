//! openraft's storage conformance suite against the RocksDB log store and
//! the snapshotting state machine (each case in a fresh temp dir).

use openraft::testing::{StoreBuilder, Suite};

use crate::raft::log_store::LogStore;
use crate::raft::state_machine::StateMachine;
use crate::raft::{StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("create temp dir");
        let log =
            LogStore::open(&dir.path().join("log"), Default::default()).expect("open log store");
        let (sm, _handle) = StateMachine::open(&dir.path().join("sm"), Default::default())
            .expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("storage suite");
}
