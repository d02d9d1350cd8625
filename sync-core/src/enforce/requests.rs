//! Approval requests: new ones by their author only, answered only by the partner, add
//! requests that describe their item exactly, edit requests that would change something.

use super::*;

impl Enforcer<'_> {
    pub(super) fn target_exists(&self, a: &Approval) -> bool {
        let key = a.target_id.to_string();
        match a.request_type {
            RequestType::ExpenseAdd | RequestType::ExpenseEdit => {
                matches!(read::read_expense(self.after, &key), Ok(Some(_)))
            }
            RequestType::GoalAdd | RequestType::GoalEdit => {
                matches!(read::read_goal(self.after, &key), Ok(Some(_)))
            }
        }
    }

    pub(super) fn request_data_valid(&self, a: &Approval) -> bool {
        let amount_ok = |m: Option<MinorUnits>| {
            m.is_none_or(|m| validate::positive_amount("amount", m, &self.currency).is_ok())
        };
        let name_ok = |n: &Option<String>| {
            n.as_deref()
                .is_none_or(|n| validate::name("name", n).is_ok())
        };
        let note_ok = validate::note(a.message.as_deref()).is_ok();
        note_ok
            && match (&a.request_type, &a.request_data) {
                (RequestType::ExpenseAdd | RequestType::ExpenseEdit, RequestData::Expense(f)) => {
                    name_ok(&f.name) && amount_ok(f.amount)
                }
                (RequestType::GoalAdd | RequestType::GoalEdit, RequestData::Goal(f)) => {
                    name_ok(&f.name) && amount_ok(f.target_amount)
                }
                _ => false,
            }
    }

    pub(super) fn check_approval(&mut self, key: &str) {
        let before: Read<Approval> =
            before_of(&self.before.approvals, self.after, key, read::read_approval);
        let after: Read<Approval> = read::read_approval(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) => self.check_existing_approval(b, a),
            (Ok(Some(b)), Ok(None)) if self.withdrawn_with_its_item(&b) => {}
            (Ok(Some(b)), _) => self.fixes.push(Fix::PutApproval(b)),
            (_, Ok(None)) => {}
            (_, Ok(Some(a))) => self.check_new_approval(a),
            (_, Err(_)) => self.remove(Collection::Approvals, key),
        }
    }

    pub(super) fn check_new_approval(&mut self, a: Approval) {
        let key = a.id.to_string();
        let is_add = matches!(
            a.request_type,
            RequestType::ExpenseAdd | RequestType::GoalAdd
        );
        // An add request lives at the id derived from its target, so there is exactly one per
        // item and its content can always be checked against the item (below, when the item is
        // checked). One filed under any other id is replaced by the server's own, which keeps
        // its note.
        if is_add && a.requested_by == self.author && a.id != add_request_id(a.target_id) {
            if a.message.is_some() && validate::note(a.message.as_deref()).is_ok() {
                self.add_notes.insert(a.target_id, a.message.clone());
            }
            return self.remove(Collection::Approvals, &key);
        }
        if a.requested_by != self.author || !self.target_exists(&a) || !self.request_data_valid(&a)
        {
            return self.remove(Collection::Approvals, &key);
        }
        if !is_add && !self.edit_would_change_target(&a) {
            // Approving it would change nothing (the target is archived, or the proposal
            // equals what it holds), so it would tell the partner something untrue.
            return self.remove(Collection::Approvals, &key);
        }
        // Answering one's own new request is self-approval: it stays pending.
        let fixed = Approval {
            status: ApprovalStatus::Pending,
            responded_by: None,
            responded_at: None,
            created_at: self.bounded(a.created_at),
            ..a.clone()
        };
        if fixed != a {
            self.fixes.push(Fix::PutApproval(fixed.clone()));
        }
        self.new_requests.push(fixed);
    }

    /// A pending add request removed in the merge that archived its item (withdrawing it, as
    /// the operations do) may go: approving it would no longer add anything.
    pub(super) fn withdrawn_with_its_item(&self, b: &Approval) -> bool {
        let key = b.target_id.to_string();
        let archived = match b.request_type {
            RequestType::ExpenseAdd => matches!(
                (before_of(&self.before.expenses, self.after, &key, read::read_expense),
                 read::read_expense(self.after, &key)),
                (Ok(Some(was)), Ok(Some(now)))
                    if was.status == ItemStatus::PendingApproval && now.status == ItemStatus::Archived
            ),
            RequestType::GoalAdd => matches!(
                (before_of(&self.before.goals, self.after, &key, read::read_goal),
                 read::read_goal(self.after, &key)),
                (Ok(Some(was)), Ok(Some(now)))
                    if was.status == ItemStatus::PendingApproval && now.status == ItemStatus::Archived
            ),
            _ => false,
        };
        b.status == ApprovalStatus::Pending && b.id == add_request_id(b.target_id) && archived
    }

    /// An item archived while waiting for approval is withdrawn: its pending add request goes
    /// with it.
    pub(super) fn withdraw_add_request(&mut self, item: EntityId) {
        let id = add_request_id(item);
        if self
            .request_now(id)
            .is_some_and(|r| r.status == ApprovalStatus::Pending)
        {
            self.new_requests.retain(|r| r.id != id);
            self.remove(Collection::Approvals, &id.to_string());
        }
    }

    /// Whether approving the edit request `a` would change its target (as the merge leaves it).
    pub(super) fn edit_would_change_target(&self, a: &Approval) -> bool {
        let key = a.target_id.to_string();
        match &a.request_data {
            RequestData::Expense(f) => match read::read_expense(self.after, &key) {
                Ok(Some(t)) => t.status != ItemStatus::Archived && f.apply_to(&t) != t,
                _ => false,
            },
            RequestData::Goal(f) => match read::read_goal(self.after, &key) {
                Ok(Some(t)) => t.status != ItemStatus::Archived && f.apply_to(&t) != t,
                _ => false,
            },
        }
    }

    pub(super) fn check_existing_approval(&mut self, b: Approval, a: Approval) {
        if a == b {
            return;
        }
        let content_changed = Approval {
            status: b.status,
            responded_by: b.responded_by,
            responded_at: b.responded_at,
            ..a.clone()
        } != b;
        let answering = b.status == ApprovalStatus::Pending && a.status != ApprovalStatus::Pending;
        let may_answer = b.requested_by != self.author;
        if answering && may_answer {
            let answered = Approval {
                responded_by: Some(self.author),
                responded_at: Some(a.responded_at.map_or(self.now, |t| self.bounded(t))),
                status: a.status,
                ..b.clone()
            };
            if content_changed
                || a.responded_by != answered.responded_by
                || a.responded_at != answered.responded_at
            {
                self.fixes.push(Fix::PutApproval(answered.clone()));
            }
            self.sanctioned.insert(answered.id, answered);
            return;
        }
        // Anything else (self-answer, re-answer, un-answer, content edit) is reverted.
        self.fixes.push(Fix::PutApproval(b));
    }

    /// The answers given in this merge that concern `target`.
    pub(super) fn answers_for(&self, target: EntityId) -> Vec<Approval> {
        self.sanctioned
            .values()
            .filter(|a| a.target_id == target)
            .cloned()
            .collect()
    }

    /// An add request a client filed in this merge stands only while its item, as this merge
    /// leaves it, is waiting for approval and was added by the requester: approving one for an
    /// active or archived item (or someone else's) would change nothing it says.
    pub(super) fn drop_add_requests_without_a_pending_item(&mut self) {
        let filed: Vec<Approval> = self
            .new_requests
            .iter()
            .filter(|a| {
                matches!(
                    a.request_type,
                    RequestType::ExpenseAdd | RequestType::GoalAdd
                )
            })
            .cloned()
            .collect();
        for a in filed {
            let item = match a.request_type {
                RequestType::ExpenseAdd => self
                    .expense_now(a.target_id)
                    .map(|e| (e.status, e.added_by)),
                _ => self.goal_now(a.target_id).map(|g| (g.status, g.added_by)),
            };
            if item != Some((ItemStatus::PendingApproval, a.requested_by)) {
                self.new_requests.retain(|r| r.id != a.id);
                self.remove(Collection::Approvals, &a.id.to_string());
            }
        }
    }

    /// The entity `id` of `collection` as this merge leaves it so far: as the last fix that
    /// writes (`put`) or removes it left it, else as the document holds it after the merge.
    fn entity_now<T>(
        &self,
        collection: Collection,
        id: EntityId,
        put: impl Fn(&Fix) -> Option<T>,
        read: fn(&Automerge, &str) -> Read<T>,
    ) -> Option<T> {
        let key = id.to_string();
        for fix in self.fixes.iter().rev() {
            if let Some(written) = put(fix) {
                return Some(written);
            }
            if matches!(fix, Fix::Remove { collection: c, key: k } if *c == collection && *k == key)
            {
                return None;
            }
        }
        read(self.after, &key).ok().flatten()
    }

    /// The expense `id` as this merge leaves it so far (fixes included).
    pub(super) fn expense_now(&self, id: EntityId) -> Option<Expense> {
        let put = |f: &Fix| match f {
            Fix::PutExpense(e) if e.id == id => Some(e.clone()),
            _ => None,
        };
        self.entity_now(Collection::Expenses, id, put, read::read_expense)
    }

    /// The goal `id` as this merge leaves it so far (fixes included).
    pub(super) fn goal_now(&self, id: EntityId) -> Option<Goal> {
        let put = |f: &Fix| match f {
            Fix::PutGoal(g) if g.id == id => Some(g.clone()),
            _ => None,
        };
        self.entity_now(Collection::Goals, id, put, read::read_goal)
    }

    /// The request `id` as this merge leaves it so far: filed or corrected in it, removed by
    /// it, or as the document holds it.
    pub(super) fn request_now(&self, id: EntityId) -> Option<Approval> {
        if let Some(a) = self.new_requests.iter().rev().find(|a| a.id == id) {
            return Some(a.clone());
        }
        let put = |f: &Fix| match f {
            Fix::PutApproval(a) if a.id == id => Some(a.clone()),
            _ => None,
        };
        self.entity_now(Collection::Approvals, id, put, read::read_approval)
    }

    /// A pending item has exactly one pending add request, at the id derived from it, and that
    /// request describes the item exactly as approving it will make it active: filed when
    /// missing, corrected when a client wrote other values into it (or an approved edit changed
    /// the pending item since).
    pub(super) fn ensure_add_request(&mut self, rt: RequestType, item: &AddedItem) {
        let id = add_request_id(item.id);
        match self.request_now(id) {
            Some(r) if r.status != ApprovalStatus::Pending => {}
            Some(r) => {
                let fixed = Approval {
                    requested_by: item.added_by,
                    request_type: rt,
                    target_id: item.id,
                    request_data: item.data.clone(),
                    ..r.clone()
                };
                if fixed != r {
                    self.fixes.push(Fix::PutApproval(fixed.clone()));
                    self.new_requests.push(fixed);
                }
            }
            None => {
                let approval = Approval {
                    id,
                    requested_by: item.added_by,
                    request_type: rt,
                    target_id: item.id,
                    request_data: item.data.clone(),
                    message: self.add_notes.get(&item.id).cloned().flatten(),
                    status: ApprovalStatus::Pending,
                    responded_by: None,
                    responded_at: None,
                    created_at: self.now,
                };
                self.new_requests.push(approval.clone());
                self.fixes.push(Fix::PutApproval(approval));
            }
        }
    }

    pub(super) fn file_request(
        &mut self,
        rt: RequestType,
        target: EntityId,
        data: RequestData,
        id: EntityId,
    ) {
        let approval = Approval {
            id,
            requested_by: self.author,
            request_type: rt,
            target_id: target,
            request_data: data,
            message: None,
            status: ApprovalStatus::Pending,
            responded_by: None,
            responded_at: None,
            created_at: self.now,
        };
        self.new_requests.push(approval.clone());
        self.fixes.push(Fix::PutApproval(approval));
    }

    /// A client-written time, bounded by the server's receive time plus the clock skew allowed
    /// ([`crate::time::MAX_CLOCK_SKEW`]): a later one is replaced by the receive time.
    pub(super) fn bounded(&self, t: Millis) -> Millis {
        t.at_most(self.now)
    }
}
