//! [`Array`] and [`Map`]: the containers of [`Value`], safe at any depth.
//!
//! Go accepts JSON nested 10000 levels deep, so a decoded [`Value`] can be
//! that deep. Compiler-generated `Drop`, `Clone`, `PartialEq` and `Debug`
//! would recurse once per level and could overflow a thread's stack (tokio
//! workers have 2 MiB). These wrappers drop iteratively and run the other
//! recursive operations on a stack that grows on demand, so every value the
//! decoder accepts can be dropped, cloned, compared and printed anywhere.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::value::Value;

/// Stack that must remain before recursing one more level.
const RED_ZONE: usize = 128 * 1024;
/// Size of each extra stack segment.
const SEGMENT: usize = 2 * 1024 * 1024;

/// Runs `f`, on a new stack segment when the current stack is short: the
/// recursive operations on values (here and in their `serde` support).
pub(crate) fn grow<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, SEGMENT, f)
}

/// Moves the children of `v` onto `stack`, leaving `v` without children.
fn take_children(v: &mut Value, stack: &mut Vec<Value>) {
    match v {
        Value::Array(a) => stack.append(&mut a.0),
        Value::Object(m) => stack.extend(std::mem::take(&mut m.0).into_values()),
        _ => {}
    }
}

/// Below this much free stack, containers are dropped iteratively; above it
/// the ordinary (recursive, allocation-free) drop runs.
const DROP_FLAT_BELOW: usize = 256 * 1024;

/// True when the stack is too short for ordinary recursive drops.
fn stack_is_short() -> bool {
    stacker::remaining_stack().is_none_or(|r| r < DROP_FLAT_BELOW)
}

/// Drops `items` without recursion.
fn drop_flat(items: Vec<Value>) {
    if !items.iter().any(Value::is_container) {
        return;
    }
    let mut stack = items;
    while let Some(mut v) = stack.pop() {
        take_children(&mut v, &mut stack);
    }
}

/// A JSON array: a `Vec<Value>` (reachable through `Deref`) that is safe to
/// drop, clone, compare and print at any nesting depth.
#[derive(Default)]
pub struct Array(Vec<Value>);

impl Array {
    /// An empty array.
    pub fn new() -> Self {
        Array(Vec::new())
    }

    /// The elements as a vector.
    pub fn into_vec(mut self) -> Vec<Value> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Array {
    fn drop(&mut self) {
        if stack_is_short() {
            drop_flat(std::mem::take(&mut self.0));
        }
    }
}

impl Deref for Array {
    type Target = Vec<Value>;
    fn deref(&self) -> &Vec<Value> {
        &self.0
    }
}

impl DerefMut for Array {
    fn deref_mut(&mut self) -> &mut Vec<Value> {
        &mut self.0
    }
}

impl Clone for Array {
    fn clone(&self) -> Self {
        grow(|| Array(self.0.clone()))
    }
}

impl PartialEq for Array {
    fn eq(&self, other: &Self) -> bool {
        grow(|| self.0 == other.0)
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        grow(|| f.debug_list().entries(self.0.iter()).finish())
    }
}

impl From<Vec<Value>> for Array {
    fn from(v: Vec<Value>) -> Self {
        Array(v)
    }
}

impl From<Array> for Vec<Value> {
    fn from(a: Array) -> Self {
        a.into_vec()
    }
}

impl FromIterator<Value> for Array {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Self {
        Array(iter.into_iter().collect())
    }
}

impl IntoIterator for Array {
    type Item = Value;
    type IntoIter = std::vec::IntoIter<Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Array {
    type Item = &'a Value;
    type IntoIter = std::slice::Iter<'a, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A JSON object: a `BTreeMap<String, Value>` (reachable through `Deref`),
/// so keys are kept sorted by their UTF-8 bytes, the order Go writes them in.
/// Safe to drop, clone, compare and print at any nesting depth.
#[derive(Default)]
pub struct Map(BTreeMap<String, Value>);

impl Map {
    /// An empty object.
    pub fn new() -> Self {
        Map(BTreeMap::new())
    }

    /// The members as a `BTreeMap`.
    pub fn into_inner(mut self) -> BTreeMap<String, Value> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        if stack_is_short() && self.0.values().any(Value::is_container) {
            drop_flat(std::mem::take(&mut self.0).into_values().collect());
        }
    }
}

impl Deref for Map {
    type Target = BTreeMap<String, Value>;
    fn deref(&self) -> &BTreeMap<String, Value> {
        &self.0
    }
}

impl DerefMut for Map {
    fn deref_mut(&mut self) -> &mut BTreeMap<String, Value> {
        &mut self.0
    }
}

impl Clone for Map {
    fn clone(&self) -> Self {
        grow(|| Map(self.0.clone()))
    }
}

impl PartialEq for Map {
    fn eq(&self, other: &Self) -> bool {
        grow(|| self.0 == other.0)
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        grow(|| f.debug_map().entries(self.0.iter()).finish())
    }
}

impl From<BTreeMap<String, Value>> for Map {
    fn from(m: BTreeMap<String, Value>) -> Self {
        Map(m)
    }
}

impl From<Map> for BTreeMap<String, Value> {
    fn from(m: Map) -> Self {
        m.into_inner()
    }
}

impl FromIterator<(String, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Map(iter.into_iter().collect())
    }
}

impl IntoIterator for Map {
    type Item = (String, Value);
    type IntoIter = std::collections::btree_map::IntoIter<String, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.into_inner().into_iter()
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a String, &'a Value);
    type IntoIter = std::collections::btree_map::Iter<'a, String, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_arrays(depth: usize) -> Value {
        let mut v = Value::Null;
        for _ in 0..depth {
            v = Value::Array(Array::from(vec![v]));
        }
        v
    }

    fn nested_objects(depth: usize) -> Value {
        let mut v = Value::Null;
        for _ in 0..depth {
            let mut m = Map::new();
            m.insert("a".to_owned(), v);
            v = Value::Object(m);
        }
        v
    }

    /// Runs `f` on a thread with a small stack, as a tokio worker would have.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new().stack_size(256 * 1024).spawn(f).unwrap().join().unwrap();
    }

    #[test]
    fn deep_values_drop_clone_compare_and_print_on_a_small_stack() {
        on_small_stack(|| {
            for v in [nested_arrays(100_000), nested_objects(100_000)] {
                let c = v.clone();
                assert_eq!(c, v);
                assert!(format!("{c:?}").len() > 100_000);
                drop(c);
                drop(v);
            }
        });
    }

    #[test]
    fn unequal_deep_values_compare_unequal() {
        on_small_stack(|| {
            assert_ne!(nested_arrays(50_000), nested_arrays(50_001));
        });
    }
}
