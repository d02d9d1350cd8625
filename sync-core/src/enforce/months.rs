//! Monthly contributions: a partner marks only their own share paid; amounts are the server's.

use super::*;

impl Enforcer<'_> {
    pub(super) fn check_month(&mut self, key: &str) {
        let before: Read<MonthContribution> =
            before_of(&self.before.months, self.after, key, read::read_month);
        let after: Read<MonthContribution> = read::read_month(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) if a == b => {}
            (Ok(Some(b)), after) => {
                let mut expected = b.clone();
                if let Ok(Some(a)) = &after {
                    let own_was_unpaid = !matches!(b.paid.get(&self.author), Some(Some(_)));
                    let own_now = a.paid.get(&self.author).copied().flatten();
                    let is_member = b.amounts.contains_key(&self.author)
                        || self.partner.is_some_and(|p| b.amounts.contains_key(&p));
                    if own_was_unpaid && is_member {
                        if let Some(at) = own_now {
                            expected.paid.insert(self.author, Some(self.bounded(at)));
                        }
                    }
                }
                if after.as_ref().ok().and_then(|a| a.as_ref()) != Some(&expected) {
                    self.fixes.push(Fix::PutMonth(expected));
                }
            }
            (_, Ok(None)) => {}
            (_, _) => self.remove(Collection::Contributions, key),
        }
    }
}
