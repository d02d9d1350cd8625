//! Expenses and goals (with their logged contributions and saved-amount counters): additions
//! over the threshold wait for approval, edits become requests, times are bounded.

use super::*;

impl Enforcer<'_> {
    pub(super) fn expense_valid(&self, e: &Expense) -> bool {
        validate::name("name", &e.name).is_ok()
            && validate::positive_amount("amount", e.amount, &self.currency).is_ok()
    }

    pub(super) fn check_expense(&mut self, key: &str) {
        let before: Read<Expense> =
            before_of(&self.before.expenses, self.after, key, read::read_expense);
        let after: Read<Expense> = read::read_expense(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) => self.check_existing_expense(b, a),
            (Ok(Some(b)), _) => {
                // Restored as the answers given in this merge left it (a declined addition
                // comes back archived, not pending without a request).
                let restored = self
                    .answers_for(b.id)
                    .iter()
                    .fold(b, |e, ans| expense_after_answer(&e, ans));
                if restored.status == ItemStatus::PendingApproval {
                    self.ensure_add_request(
                        RequestType::ExpenseAdd,
                        &AddedItem::expense(&restored),
                    );
                }
                self.fixes.push(Fix::PutExpense(restored));
            }
            (_, Ok(None)) => {}
            (_, Ok(Some(a))) if self.expense_valid(&a) => self.check_new_expense(a),
            (_, _) => self.remove(Collection::Expenses, key),
        }
    }

    pub(super) fn check_new_expense(&mut self, a: Expense) {
        let mut fixed = a.clone();
        fixed.added_by = self.author;
        fixed.created_at = self.bounded(a.created_at);
        fixed.updated_at = self.bounded(a.updated_at);
        let over = self.policy.expense_add_needs_approval(a.amount);
        if a.status == ItemStatus::Active && over {
            fixed.status = ItemStatus::PendingApproval;
        }
        if fixed != a {
            self.fixes.push(Fix::PutExpense(fixed.clone()));
        }
        if fixed.status == ItemStatus::PendingApproval {
            self.ensure_add_request(RequestType::ExpenseAdd, &AddedItem::expense(&fixed));
        }
    }

    pub(super) fn check_existing_expense(&mut self, b: Expense, a: Expense) {
        // The state the merge may legitimately produce: before + answers given in it.
        let mut baseline = b.clone();
        for ans in self.answers_for(b.id) {
            baseline = expense_after_answer(&baseline, &ans);
        }
        let mut fixed = a.clone();
        fixed.added_by = b.added_by;
        fixed.created_at = b.created_at;
        if a.updated_at != b.updated_at {
            fixed.updated_at = self.bounded(a.updated_at);
        }
        // Status: only archiving is free; anything else must match the baseline.
        let free_archive = a.status == ItemStatus::Archived;
        if !free_archive {
            fixed.status = baseline.status;
        }
        // Fields: edits the client made itself become a request; unapplied answers get applied.
        let client_edit = ExpenseFields::changed(&b, &a);
        let sanctioned = ExpenseFields::changed(&b, &baseline);
        let unapproved = ExpenseFields {
            name: client_edit
                .name
                .filter(|v| Some(v) != sanctioned.name.as_ref()),
            amount: client_edit.amount.filter(|v| Some(*v) != sanctioned.amount),
            category: client_edit
                .category
                .filter(|v| Some(*v) != sanctioned.category),
            frequency: client_edit
                .frequency
                .filter(|v| Some(*v) != sanctioned.frequency),
        };
        fixed.name = baseline.name.clone();
        fixed.amount = baseline.amount;
        fixed.category = baseline.category;
        fixed.frequency = baseline.frequency;
        if !unapproved.is_empty() && self.expense_valid(&unapproved.apply_to(&baseline)) {
            let id = edit_request_id(b.id, &format!("{unapproved:?}"));
            self.file_request(
                RequestType::ExpenseEdit,
                b.id,
                RequestData::Expense(unapproved),
                id,
            );
        }
        if fixed.status == ItemStatus::PendingApproval {
            self.ensure_add_request(RequestType::ExpenseAdd, &AddedItem::expense(&fixed));
        }
        if fixed.status == ItemStatus::Archived && baseline.status == ItemStatus::PendingApproval {
            self.withdraw_add_request(b.id);
        }
        if fixed != a {
            self.fixes.push(Fix::PutExpense(fixed));
        }
    }

    // ---- goals and their contributions --------------------------------------------------

    pub(super) fn goal_valid(&self, g: &Goal) -> bool {
        validate::name("name", &g.name).is_ok()
            && validate::positive_amount("target_amount", g.target_amount, &self.currency).is_ok()
            && g.saved_amount.0 >= 0
    }

    /// Checks one touched contribution entry; returns the goal and by how much this merge
    /// legitimately moved its saved amount through it.
    pub(super) fn check_goal_contribution(&mut self, key: &str) -> Option<(String, i64)> {
        let before: Read<GoalContribution> = before_of(
            &self.before.goal_contributions,
            self.after,
            key,
            read::read_goal_contribution,
        );
        let after: Read<GoalContribution> = read::read_goal_contribution(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) if a == b => None,
            (Ok(Some(b)), _) => {
                self.fixes.push(Fix::PutGoalContribution(b.clone()));
                Some((b.goal_id.to_string(), 0))
            }
            (_, Ok(None)) => None,
            (_, Ok(Some(a))) => {
                let goal_key = a.goal_id.to_string();
                let before_goal =
                    before_of(&self.before.goals, self.after, &goal_key, read::read_goal);
                let goal_ok = match (&before_goal, read::read_goal(self.after, &goal_key)) {
                    (Ok(Some(b)), Ok(Some(g))) => {
                        b.status == ItemStatus::Active && g.status == ItemStatus::Active
                    }
                    // Deleted or broken in this merge: it is restored as it was, so the
                    // contribution is judged against that and counted in the restored goal.
                    (Ok(Some(b)), _) => b.status == ItemStatus::Active,
                    _ => false,
                };
                let amount_ok =
                    validate::positive_amount("amount", a.amount, &self.currency).is_ok();
                if !goal_ok || !amount_ok {
                    self.remove(Collection::GoalContributions, key);
                    return Some((goal_key, 0));
                }
                let fixed = GoalContribution {
                    user_id: self.author,
                    created_at: self.bounded(a.created_at),
                    ..a.clone()
                };
                if fixed != a {
                    self.fixes.push(Fix::PutGoalContribution(fixed));
                }
                Some((goal_key, a.amount.0))
            }
            (_, Err(_)) => {
                self.remove(Collection::GoalContributions, key);
                None
            }
        }
    }

    pub(super) fn check_goal(&mut self, key: &str, contributed: i64) {
        let before: Read<Goal> = before_of(&self.before.goals, self.after, key, read::read_goal);
        let after: Read<Goal> = read::read_goal(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) => self.check_existing_goal(b, a, contributed),
            (Ok(Some(b)), _) => {
                let restored = self
                    .answers_for(b.id)
                    .iter()
                    .fold(b, |g, ans| goal_after_answer(&g, ans));
                if restored.status == ItemStatus::PendingApproval {
                    self.ensure_add_request(RequestType::GoalAdd, &AddedItem::goal(&restored));
                }
                self.fixes.push(Fix::PutGoal(restored.clone()));
                self.fix_saved(&restored, None, restored.saved_amount.0 + contributed);
            }
            (_, Ok(None)) => {}
            (_, Ok(Some(a))) if self.goal_valid(&a) => self.check_new_goal(a, contributed),
            (_, _) => self.remove(Collection::Goals, key),
        }
    }

    /// Makes the saved-amount counter equal `expected`.
    pub(super) fn fix_saved(&mut self, goal: &Goal, current: Option<&Goal>, expected: i64) {
        let obj = read::entity_obj(self.after, Collection::Goals, &goal.id.to_string())
            .ok()
            .flatten();
        let is_counter = obj
            .as_ref()
            .is_some_and(|o| read::is_counter(self.after, o, "saved_amount"));
        let current_value = current.map(|g| g.saved_amount.0);
        if is_counter && current_value == Some(expected) {
            return;
        }
        self.fixes.push(Fix::FixSaved {
            goal: goal.id,
            value: MinorUnits(expected),
        });
    }

    pub(super) fn check_new_goal(&mut self, a: Goal, contributed: i64) {
        let mut fixed = a.clone();
        fixed.added_by = self.author;
        fixed.created_at = self.bounded(a.created_at);
        fixed.updated_at = self.bounded(a.updated_at);
        if a.status == ItemStatus::Active {
            fixed.status = ItemStatus::PendingApproval;
        }
        let mut comparable = fixed.clone();
        comparable.saved_amount = a.saved_amount;
        if comparable != a {
            self.fixes.push(Fix::PutGoal(fixed.clone()));
        }
        self.fix_saved(&fixed, Some(&a), contributed);
        if fixed.status == ItemStatus::PendingApproval {
            self.ensure_add_request(RequestType::GoalAdd, &AddedItem::goal(&fixed));
        }
    }

    pub(super) fn check_existing_goal(&mut self, b: Goal, a: Goal, contributed: i64) {
        let mut baseline = b.clone();
        for ans in self.answers_for(b.id) {
            baseline = goal_after_answer(&baseline, &ans);
        }
        let mut fixed = a.clone();
        fixed.added_by = b.added_by;
        fixed.created_at = b.created_at;
        if a.updated_at != b.updated_at {
            fixed.updated_at = self.bounded(a.updated_at);
        }
        if a.status != ItemStatus::Archived {
            fixed.status = baseline.status;
        }
        let client_edit = GoalFields::changed(&b, &a);
        let sanctioned = GoalFields::changed(&b, &baseline);
        let unapproved = GoalFields {
            name: client_edit
                .name
                .filter(|v| Some(v) != sanctioned.name.as_ref()),
            target_amount: client_edit
                .target_amount
                .filter(|v| Some(*v) != sanctioned.target_amount),
            goal_type: client_edit
                .goal_type
                .filter(|v| Some(*v) != sanctioned.goal_type),
            priority: client_edit
                .priority
                .filter(|v| Some(*v) != sanctioned.priority),
        };
        fixed.name = baseline.name.clone();
        fixed.target_amount = baseline.target_amount;
        fixed.goal_type = baseline.goal_type;
        fixed.priority = baseline.priority;
        if !unapproved.is_empty() && self.goal_valid(&unapproved.apply_to(&baseline)) {
            let id = edit_request_id(b.id, &format!("{unapproved:?}"));
            self.file_request(
                RequestType::GoalEdit,
                b.id,
                RequestData::Goal(unapproved),
                id,
            );
        }
        if fixed.status == ItemStatus::PendingApproval {
            self.ensure_add_request(RequestType::GoalAdd, &AddedItem::goal(&fixed));
        }
        if fixed.status == ItemStatus::Archived && baseline.status == ItemStatus::PendingApproval {
            self.withdraw_add_request(b.id);
        }
        let mut comparable = fixed.clone();
        comparable.saved_amount = a.saved_amount;
        if comparable != a {
            self.fixes.push(Fix::PutGoal(fixed.clone()));
        }
        self.fix_saved(&fixed, Some(&a), b.saved_amount.0 + contributed);
    }
}
