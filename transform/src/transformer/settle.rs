//! The decisions that need the whole set of objects, taken after each went through the rules.

use super::{
    Dropped, Fate, Outcome, Pending, TransformError, TransformedObject, Transformer, Warning,
};
use crate::sanitize::{ControllingOwner, SANITIZE};
use crate::spec::Action;
use std::collections::HashSet;

impl Transformer {
    /// Decides what needs the whole set and gathers the outcome in input order: objects whose
    /// controlling owner is in the set are dropped (before any rule failure of theirs counts),
    /// then storage classes mapped away and no longer named. The first failure in input order
    /// is the one reported.
    pub fn settle<O>(&self, pending: Vec<Pending<O>>) -> Result<Outcome<O>, TransformError> {
        let set_uids: HashSet<&str> = pending.iter().filter_map(|p| p.uid.as_deref()).collect();
        let owned_in_set: Vec<Option<String>> = pending
            .iter()
            .map(|p| {
                p.owner
                    .as_ref()
                    .filter(|o| !self.sanitize.keep_owned && set_uids.contains(o.uid.as_str()))
                    .map(ControllingOwner::drop_reason)
            })
            .collect();
        drop(set_uids);
        let mut out = Outcome::default();
        let mut classes = Vec::new();
        for (index, (p, owned)) in pending.into_iter().zip(owned_in_set).enumerate() {
            if owned.is_none() {
                out.warnings
                    .extend(p.warnings.into_iter().map(|w| Warning { index, ..w }));
            }
            let fate = match (p.fate, owned) {
                (Err(TransformError::Unnamed { .. }), _) => {
                    return Err(TransformError::Unnamed { index })
                }
                (Ok(Fate::Dropped(d)), _) if d.by == SANITIZE => Fate::Dropped(d),
                (fate, Some(reason)) => {
                    let source = match fate {
                        Ok(Fate::Kept(TransformedObject { source, .. }))
                        | Ok(Fate::Dropped(Dropped { source, .. })) => source,
                        Err(TransformError::Rule(f)) => f.object,
                        Err(TransformError::Helm(h)) => h.0,
                        Err(TransformError::Unnamed { .. }) => {
                            return Err(TransformError::Unnamed { index })
                        }
                    };
                    Fate::Dropped(Dropped {
                        index,
                        source,
                        by: SANITIZE.into(),
                        reason,
                    })
                }
                (Err(e), None) => return Err(e),
                (Ok(fate), None) => fate,
            };
            match fate {
                Fate::Kept(o) => {
                    out.objects.push(TransformedObject { index, ..o });
                    classes.push((p.storage_class, p.names_storage_classes));
                }
                Fate::Dropped(d) => out.dropped.push(Dropped { index, ..d }),
            }
        }
        self.drop_replaced_storage_classes(&mut out, classes);
        Ok(out)
    }

    /// A StorageClass that a `storageClass` rule maps away is left behind when nothing kept
    /// still names it: the target has its own class, and making the source's there would only
    /// offer a class whose provisioner may not exist. `classes` holds, for each kept object,
    /// the class it is and the classes it names.
    fn drop_replaced_storage_classes<O>(
        &self,
        out: &mut Outcome<O>,
        mut classes: Vec<(Option<String>, Vec<String>)>,
    ) {
        for rule in &self.rules.rules {
            let Action::StorageClass { from, to } = &rule.action else {
                continue;
            };
            let is_class = |c: &(Option<String>, Vec<String>)| c.0.as_deref() == Some(from);
            if !classes.iter().any(is_class) {
                continue;
            }
            if classes.iter().any(|(_, named)| named.contains(from)) {
                continue;
            }
            let objects = std::mem::take(&mut out.objects);
            let mut kept_classes = Vec::with_capacity(classes.len());
            for (t, c) in objects.into_iter().zip(classes) {
                if is_class(&c) {
                    out.dropped.push(Dropped {
                        index: t.index,
                        source: t.source,
                        by: rule.origin.to_string(),
                        reason: format!(
                            "replaced by storage class {to}; nothing restored names {from}"
                        ),
                    });
                } else {
                    out.objects.push(t);
                    kept_classes.push(c);
                }
            }
            classes = kept_classes;
        }
        out.dropped.sort_by_key(|d| d.index);
    }
}
