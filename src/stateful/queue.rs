//! The hits waiting for the watermark, taken out smallest first. Events
//! mostly arrive in time order, so a hit no earlier than the last one
//! queued goes to the back of a deque, and only the others into a heap:
//! in order, a push and a pop move nothing around.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// A min-queue that is cheap for items pushed in non-decreasing order.
#[derive(Debug)]
pub struct Queue<T: Ord> {
    /// Items pushed in order: sorted, smallest at the front.
    ordered: VecDeque<T>,
    /// Items smaller than the back of `ordered` when they came.
    late: BinaryHeap<Reverse<T>>,
}

impl<T: Ord> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            ordered: VecDeque::new(),
            late: BinaryHeap::new(),
        }
    }
}

impl<T: Ord> Queue<T> {
    pub fn push(&mut self, item: T) {
        match self.ordered.back() {
            Some(back) if item < *back => self.late.push(Reverse(item)),
            _ => self.ordered.push_back(item),
        }
    }

    /// Whether the smallest item is the deque's (else the heap's).
    fn front_is_ordered(&self) -> Option<bool> {
        match (self.ordered.front(), self.late.peek()) {
            (None, None) => None,
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (Some(a), Some(Reverse(b))) => Some(a <= b),
        }
    }

    pub fn peek(&self) -> Option<&T> {
        match self.front_is_ordered()? {
            true => self.ordered.front(),
            false => self.late.peek().map(|Reverse(b)| b),
        }
    }

    pub fn pop(&mut self) -> Option<T> {
        match self.front_is_ordered()? {
            true => self.ordered.pop_front(),
            false => self.late.pop().map(|Reverse(b)| b),
        }
    }

    /// Every item, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.ordered
            .iter()
            .chain(self.late.iter().map(|Reverse(item)| item))
    }

    pub fn len(&self) -> usize {
        self.ordered.len() + self.late.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Queue;
    use proptest::prelude::*;

    proptest! {
        /// Against a sorted list: any interleaving of pushes and pops, in
        /// or out of order, takes out the same items in the same order.
        #[test]
        fn pops_the_smallest_like_a_sorted_list(
            ops in proptest::collection::vec(
                prop_oneof![3 => (0u32..50).prop_map(Some), 1 => Just(None)], 0..300)
        ) {
            let mut q = Queue::default();
            let mut model: Vec<(u32, usize)> = Vec::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    // The index makes items distinct and ties break by
                    // arrival, as (time, seq) does.
                    Some(v) => {
                        q.push((v, n));
                        model.push((v, n));
                    }
                    None => {
                        model.sort();
                        let want = if model.is_empty() { None } else { Some(model.remove(0)) };
                        prop_assert_eq!(q.peek().copied(), want);
                        prop_assert_eq!(q.pop(), want);
                    }
                }
                prop_assert_eq!(q.len(), model.len());
            }
            model.sort();
            for want in model {
                prop_assert_eq!(q.pop(), Some(want));
            }
            prop_assert!(q.is_empty());
        }
    }
}
