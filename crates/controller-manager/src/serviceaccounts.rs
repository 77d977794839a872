//! The ServiceAccounts controller around
//! [`keelson_controllers::serviceaccount::missing`]: every namespace not
//! being deleted gets its `default` ServiceAccount (again, if someone
//! deletes it). Retried per account (key `ServiceAccount/ns/default`).

use std::time::Duration;

use keelson_controllers::serviceaccount::missing;
use keelson_model::Kind;
use keelson_proto::v1;
use keelson_sdk::{Error, Resource};
use tokio::sync::watch;

use crate::controller::{kind_key, Controller, PassCtx};
use crate::Ctx;

/// The ServiceAccounts controller (no state of its own).
pub struct ServiceAccounts;

impl Controller for ServiceAccounts {
    const NAME: &'static str = "serviceaccount";
    const RESYNC: Duration = Duration::from_secs(5);

    fn changes(ctx: &Ctx) -> Vec<watch::Receiver<u64>> {
        vec![ctx.namespaces.changes(), ctx.serviceaccounts.changes()]
    }

    async fn pass(&mut self, ctx: &Ctx, p: &mut PassCtx<'_>) {
        if !ctx.leading() {
            return;
        }
        let namespaces = ctx.namespaces.list();
        let accounts = ctx.serviceaccounts.list();
        for sa in missing(&namespaces, &accounts) {
            let m = sa.meta();
            let key = kind_key(Kind::ServiceAccount.name(), &m.namespace, &m.name);
            if !p.due(&key) {
                continue;
            }
            let r = match ctx
                .api::<v1::ServiceAccount>(&m.namespace)
                .create(&sa)
                .await
            {
                Ok(_) | Err(Error::AlreadyExists(_)) => Ok(()),
                // The namespace went meanwhile (or is being deleted).
                Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            };
            p.report(&key, r);
        }
    }
}
