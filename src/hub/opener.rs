//! Who opened a topic, and the per-client budget of topics open at once: one client (an
//! address, or an identity on authenticated routes; the edge says which) may hold open at most
//! its budget of topics, so it can never take the whole topic cap from everyone else.
//!
//! It only counts, under the registry's lock; it never refuses a subscriber of a topic that is
//! already open (joining one costs no upstream connection).

use std::collections::HashMap;

/// The client a new topic is charged to, as the edge names it (e.g. `ip 192.0.2.7`, or
/// `jwt alice` on a route with JWT auth); two subscriptions share a budget exactly when their
/// openers are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Opener(Box<str>);

impl Opener {
    /// Names a client.
    pub fn new(name: impl Into<Box<str>>) -> Self {
        Self(name.into())
    }

    /// The client's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Topics open per opener, against the budget each may hold.
pub(super) struct Budget {
    max: usize,
    open: HashMap<Opener, usize>,
}

impl Budget {
    /// A budget of `max` topics per opener (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: HashMap::new(),
        }
    }

    /// True if `opener` may open one more topic.
    pub fn admits(&self, opener: &Opener) -> bool {
        self.open.get(opener).copied().unwrap_or(0) < self.max
    }

    /// Charges a topic just opened to `opener`.
    pub fn charge(&mut self, opener: &Opener) {
        *self.open.entry(opener.clone()).or_insert(0) += 1;
    }

    /// Gives back the topic charged to `opener` (it closed); an opener with none left is
    /// forgotten, so the map holds only clients with open topics.
    pub fn refund(&mut self, opener: &Opener) {
        if let Some(open) = self.open.get_mut(opener) {
            *open -= 1;
            if *open == 0 {
                self.open.remove(opener);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opener_holds_its_budget_and_gets_it_back() {
        let (alice, bob) = (Opener::new("ip 192.0.2.1"), Opener::new("ip 192.0.2.2"));
        let mut budget = Budget::new(2);
        budget.charge(&alice);
        budget.charge(&alice);
        assert!(!budget.admits(&alice), "two of two taken");
        assert!(budget.admits(&bob), "another client keeps its own budget");
        budget.refund(&alice);
        assert!(budget.admits(&alice));
        budget.refund(&alice);
        assert!(
            budget.open.is_empty(),
            "clients without topics are forgotten"
        );
    }
}
