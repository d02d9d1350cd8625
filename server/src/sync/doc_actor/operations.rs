//! REST writes inside the document actor: operations queued together run one after the other,
//! each in its own change, and commit in one transaction (group commit).

use super::*;

impl DocActor {
    /// The operation just received plus the REST operations queued right behind it (up to
    /// [`MAX_APPLY_BATCH`]); the first other command met is kept for next.
    pub(super) fn gather_batch(
        &mut self,
        first: PendingOp,
        rx: &mut mpsc::Receiver<Command>,
    ) -> Vec<PendingOp> {
        let mut batch = vec![first];
        while batch.len() < MAX_APPLY_BATCH {
            match rx.try_recv() {
                Ok(Command::Apply {
                    user, op, reply, ..
                }) => batch.push((user, op, reply)),
                Ok(other) => {
                    self.deferred = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    /// Runs REST operations in order, each as its user in its own Automerge change, then commits
    /// every change they wrote, with the rows they touch, in one database transaction (one WAL
    /// flush for the batch: group commit), fans out, and only then answers each. When the
    /// commit fails the document is reloaded from storage and every operation of the batch is
    /// answered with an error: none of them is acknowledged without being durable, and none
    /// answers from a state that was not committed.
    ///
    /// When another node committed first, the batch runs again on the document caught up
    /// from storage: the operations decide on the state that includes the other node's merge.
    pub(super) async fn apply_batch(&mut self, batch: Vec<PendingOp>) {
        let (ops, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|(user, op, reply)| ((user, op), reply))
            .unzip();
        self.catch_up_with_storage().await;
        let mut answers = self.run_batch(&ops).await;
        for attempt in 0..MAX_STALE_RETRIES {
            if !answers
                .iter()
                .any(|a| a.as_ref().is_err_and(SyncError::is_stale))
            {
                break;
            }
            stale_backoff(attempt).await;
            answers = self.run_batch(&ops).await;
        }
        self.drop_stale_split();
        for (reply, answer) in replies.into_iter().zip(answers) {
            let answer = answer.map_err(|e| {
                if e.is_stale() {
                    SyncError::Unavailable
                } else {
                    e
                }
            });
            let _ = reply.send(answer);
        }
    }

    /// Runs and commits the operations once; their answers.
    async fn run_batch(&mut self, ops: &[(UserId, DocOp)]) -> Vec<Result<OpValue, SyncError>> {
        let mut answers = Vec::with_capacity(ops.len());
        let mut written: Vec<(UserId, Vec<Change>)> = Vec::new();
        for (user, op) in ops {
            let user = *user;
            let now = Millis::now();
            let heads = self.doc.get_heads();
            let result = self.doc.transact_with(
                |_| {
                    CommitOptions::default()
                        .with_message(format!(
                            "{}{user}",
                            splitsave_sync_core::history::OPERATION_MESSAGE_PREFIX
                        ))
                        .with_time(now.0 / 1000)
                },
                |tx| op(tx),
            );
            let answer = match result {
                Ok(success) => {
                    let new = self.doc.get_changes(&heads);
                    if !new.is_empty() {
                        written.push((user, new));
                    }
                    Ok(success.result)
                }
                Err(failure) => Err(SyncError::Op(failure.error)),
            };
            answers.push(answer);
        }
        if !written.is_empty() {
            let all: Vec<Change> = written
                .iter()
                .flat_map(|(_, c)| c.iter().cloned())
                .collect();
            let touched: Touched = touched_after_apply(&self.doc, &all);
            let rows = materialize::rows_for(&self.doc, &touched)
                .map(|m| m.changes)
                .unwrap_or_default();
            let changes = written
                .iter()
                .flat_map(|(user, new)| new.iter().map(|c| stored_change(c, Some(user.0))))
                .collect();
            let first_user = written[0].0;
            let notifications = written
                .iter()
                .flat_map(|(user, new)| self.notifications_for(new, *user))
                .collect();
            let history = self.history_for(&all, None);
            match self
                .persist(
                    changes,
                    Vec::new(),
                    rows,
                    notifications,
                    history,
                    Some(first_user),
                )
                .await
            {
                Ok(()) => {
                    self.registry
                        .metrics()
                        .merges(crate::metrics::MergeSource::Rest, written.len());
                    for (user, new) in &written {
                        self.publish(new, Some(*user));
                    }
                    // A pause or resume written by this batch holds for the next message.
                    self.follow_status();
                    self.fan_out();
                }
                Err(err) => {
                    let mut err = Some(err);
                    for answer in answers.iter_mut().filter(|a| a.is_ok()) {
                        // The cause goes to the first; the rest learn the write did not happen.
                        *answer = Err(err.take().unwrap_or(SyncError::Unavailable));
                    }
                }
            }
        }
        answers
    }
}
