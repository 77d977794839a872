//! The ServiceAccounts controller, after Kubernetes'
//! `serviceaccounts_controller.go`: every namespace that is not being
//! deleted has a ServiceAccount named `default`, made again if deleted.

use std::borrow::Borrow;
use std::collections::BTreeSet;

use keelson_model::{Kind, Resource};
use keelson_proto::v1;

/// The account every namespace has.
pub const DEFAULT: &str = "default";

fn active(ns: &v1::Namespace) -> bool {
    ns.meta().deletion_timestamp.is_empty()
        && ns.status.as_ref().is_none_or(|s| s.phase != "Terminating")
}

/// The `default` ServiceAccounts to create: one for each active namespace
/// among `namespaces` that has none among `accounts`. Pure.
pub fn missing<N: Borrow<v1::Namespace>, S: Borrow<v1::ServiceAccount>>(
    namespaces: &[N],
    accounts: &[S],
) -> Vec<v1::ServiceAccount> {
    let have: BTreeSet<&str> = accounts
        .iter()
        .map(Borrow::borrow)
        .filter(|a| a.meta().name == DEFAULT)
        .map(|a| a.meta().namespace.as_str())
        .collect();
    namespaces
        .iter()
        .map(Borrow::borrow)
        .filter(|ns| active(ns) && !have.contains(ns.meta().name.as_str()))
        .map(|ns| v1::ServiceAccount {
            api_version: Kind::ServiceAccount.api_version().to_string(),
            kind: Kind::ServiceAccount.name().to_string(),
            metadata: Some(v1::ObjectMeta {
                name: DEFAULT.to_string(),
                namespace: ns.meta().name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, phase: &str, deleting: bool) -> v1::Namespace {
        v1::Namespace {
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                deletion_timestamp: if deleting {
                    "2026-12-07T00:00:00Z".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            status: Some(v1::NamespaceStatus {
                phase: phase.into(),
            }),
            ..Default::default()
        }
    }

    fn sa(ns: &str, name: &str) -> v1::ServiceAccount {
        v1::ServiceAccount {
            metadata: Some(v1::ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_active_namespace_gets_a_default_account() {
        let namespaces = [
            ns("default", "Active", false),
            ns("apps", "Active", false),
            ns("old", "Terminating", false),
            ns("going", "Active", true),
            ns("team", "", false),
        ];
        let accounts = [sa("default", "default"), sa("apps", "builder")];
        let made: Vec<(String, String)> = missing(&namespaces, &accounts)
            .iter()
            .map(|a| (a.meta().namespace.clone(), a.meta().name.clone()))
            .collect();
        assert_eq!(
            made,
            [
                ("apps".to_string(), "default".to_string()),
                ("team".to_string(), "default".to_string())
            ]
        );
        let all = [
            sa("default", "default"),
            sa("apps", "default"),
            sa("team", "default"),
        ];
        assert!(missing(&namespaces, &all).is_empty());
    }
}
