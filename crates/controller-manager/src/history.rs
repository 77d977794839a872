//! The ControllerRevision writes of the StatefulSet and DaemonSet
//! controllers ([`keelson_controllers::history`]): the template's revision
//! (and any renumbered or adopted one) is written before the pods that
//! name it ([`write_revisions`]); revisions beyond the history limit are
//! deleted after the pod writes ([`delete_revisions`]).

use keelson_controllers::history::{template_of, RevisionWrite};
use keelson_proto::v1;
use keelson_sdk::{DeleteParams, Error, Resource};

use crate::Ctx;

/// Create and update the revisions among `writes` in namespace `ns`; the
/// names of those to delete, for [`delete_revisions`]. A revision that
/// already exists counts as created when it is the same owner's with the
/// same template (another round made it); otherwise the round fails, and
/// the next one, its cache showing the name taken, counts a collision.
pub async fn write_revisions(
    ctx: &Ctx,
    ns: &str,
    writes: Vec<RevisionWrite>,
) -> keelson_sdk::Result<Vec<String>> {
    let api = ctx.api::<v1::ControllerRevision>(ns);
    let mut deletes = Vec::new();
    for w in writes {
        match w {
            RevisionWrite::Create(r) => match api.create(&r).await {
                Ok(_) => {}
                Err(Error::AlreadyExists(_)) => {
                    let there = api.get(&r.meta().name).await?;
                    let owner = |x: &v1::ControllerRevision| {
                        keelson_model::controller_of(x.meta()).map(|o| o.uid.clone())
                    };
                    if owner(&there) != owner(&r) || template_of(&there) != template_of(&r) {
                        return Err(Error::Other(format!(
                            "controllerrevision {:?} exists with another owner or template",
                            r.meta().name
                        )));
                    }
                }
                Err(e) => return Err(e),
            },
            RevisionWrite::Update(r) => {
                api.update(&r).await?;
            }
            RevisionWrite::Delete(name) => deletes.push(name),
        }
    }
    Ok(deletes)
}

/// Delete the revisions `names` of namespace `ns` (one already gone
/// counts as deleted).
pub async fn delete_revisions(ctx: &Ctx, ns: &str, names: Vec<String>) -> keelson_sdk::Result<()> {
    let api = ctx.api::<v1::ControllerRevision>(ns);
    for name in names {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
