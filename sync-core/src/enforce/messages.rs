//! Messages: the sender is the author, only the recipient marks one read, none is edited.

use super::*;

impl Enforcer<'_> {
    pub(super) fn check_message(&mut self, key: &str) {
        let before: Read<Message> =
            before_of(&self.before.messages, self.after, key, read::read_message);
        let after: Read<Message> = read::read_message(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) if a == b => {}
            (Ok(Some(b)), Ok(Some(a))) => {
                let only_read = Message {
                    read_by_recipient: b.read_by_recipient,
                    ..a.clone()
                } == b;
                let recipient_reads =
                    !b.read_by_recipient && a.read_by_recipient && b.sender_id != self.author;
                if !(only_read && recipient_reads) {
                    let mut fixed = b.clone();
                    if recipient_reads {
                        fixed.read_by_recipient = true;
                    }
                    self.fixes.push(Fix::PutMessage(fixed));
                }
            }
            (Ok(Some(b)), _) => self.fixes.push(Fix::PutMessage(b)),
            (_, Ok(None)) => {}
            (_, Ok(Some(a)))
                if a.sender_id == self.author && validate::message_text(&a.text).is_ok() =>
            {
                let fixed = Message {
                    read_by_recipient: false,
                    created_at: self.bounded(a.created_at),
                    ..a.clone()
                };
                if fixed != a {
                    self.fixes.push(Fix::PutMessage(fixed));
                }
            }
            (_, _) => self.remove(Collection::Messages, key),
        }
    }
}
