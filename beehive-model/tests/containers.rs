//! `Array` and `Map`, the containers of a decoded `Value`: their conversions,
//! iteration, comparison and printing behave as the `Vec` and `BTreeMap` they
//! wrap, at any depth.

use std::collections::BTreeMap;

use beehive_model::{Array, Map, Number, Value};

fn int(i: i64) -> Value {
    Value::Number(Number::Int(i))
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn sample_vec() -> Vec<Value> {
    vec![int(1), text("two"), Value::Bool(true), Value::Null]
}

fn sample_btree() -> BTreeMap<String, Value> {
    [("b", int(2)), ("a", text("one")), ("c", Value::Null)].into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[test]
fn an_array_gives_back_the_elements_it_was_built_from() {
    assert!(Array::new().is_empty());
    assert_eq!(Array::default().len(), 0);

    let a = Array::from(sample_vec());
    assert_eq!(a.len(), 4);
    assert_eq!(a[1], text("two"));
    assert_eq!(a.clone().into_vec(), sample_vec());
    assert_eq!(Vec::<Value>::from(a.clone()), sample_vec());
    assert_eq!(a.clone().into_iter().collect::<Vec<_>>(), sample_vec());
    assert_eq!((&a).into_iter().cloned().collect::<Vec<_>>(), sample_vec());
    assert_eq!(sample_vec().into_iter().collect::<Array>(), a);
}

#[test]
fn an_array_can_be_changed_in_place_and_its_clone_is_independent() {
    let mut a = Array::from(sample_vec());
    let before = a.clone();
    a.push(int(5));
    a[0] = int(-1);
    assert_eq!(a.len(), 5);
    assert_eq!(a[0], int(-1));
    assert_eq!(a[4], int(5));
    assert_eq!(before.into_vec(), sample_vec());
}

#[test]
fn arrays_compare_by_their_elements_in_order() {
    let a = Array::from(sample_vec());
    assert_eq!(a, Array::from(sample_vec()));
    let mut reversed = sample_vec();
    reversed.reverse();
    assert_ne!(a, Array::from(reversed));
    assert_ne!(a, Array::from(sample_vec()[..3].to_vec()));
    assert_ne!(Array::new(), Array::from(vec![Value::Null]));
}

#[test]
fn an_array_prints_as_the_vector_it_holds() {
    let a = Array::from(sample_vec());
    assert_eq!(format!("{a:?}"), format!("{:?}", sample_vec()));
    assert_eq!(format!("{:?}", Array::new()), "[]");
}

#[test]
fn a_map_gives_back_the_members_it_was_built_from_in_key_order() {
    assert!(Map::new().is_empty());
    assert_eq!(Map::default().len(), 0);

    let m = Map::from(sample_btree());
    assert_eq!(m.len(), 3);
    assert_eq!(m.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(m["b"], int(2));
    assert_eq!(m.clone().into_inner(), sample_btree());
    assert_eq!(BTreeMap::from(m.clone()), sample_btree());
    assert_eq!(m.clone().into_iter().collect::<Vec<_>>(), sample_btree().into_iter().collect::<Vec<_>>());
    assert_eq!((&m).into_iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>(), sample_btree());
    assert_eq!(sample_btree().into_iter().collect::<Map>(), m);
}

#[test]
fn a_map_can_be_changed_in_place_and_its_clone_is_independent() {
    let mut m = Map::from(sample_btree());
    let before = m.clone();
    m.insert("d".to_owned(), int(4));
    m.remove("a");
    *m.get_mut("b").unwrap() = Value::Bool(false);
    assert_eq!(m.keys().map(String::as_str).collect::<Vec<_>>(), ["b", "c", "d"]);
    assert_eq!(m["b"], Value::Bool(false));
    assert_eq!(before.into_inner(), sample_btree());
}

#[test]
fn maps_compare_by_their_members() {
    let m = Map::from(sample_btree());
    assert_eq!(m, Map::from(sample_btree()));
    let mut other_value = sample_btree();
    other_value.insert("c".to_owned(), Value::Bool(false));
    assert_ne!(m, Map::from(other_value));
    let mut other_key = sample_btree();
    let v = other_key.remove("c").unwrap();
    other_key.insert("C".to_owned(), v);
    assert_ne!(m, Map::from(other_key));
    assert_ne!(Map::new(), m);
}

#[test]
fn a_map_prints_as_the_btree_map_it_holds() {
    let m = Map::from(sample_btree());
    assert_eq!(format!("{m:?}"), format!("{:?}", sample_btree()));
    assert_eq!(format!("{:?}", Map::new()), "{}");
}

/// Nested containers mixing both kinds, `depth` levels deep, with a leaf
/// and a sibling at every level so that dropping has more than one child
/// to take apart.
fn mixed(depth: usize) -> Value {
    let mut v = int(0);
    for i in 0..depth {
        v = if i % 2 == 0 {
            Value::Array(Array::from(vec![v, int(i as i64)]))
        } else {
            let mut m = Map::new();
            m.insert("next".to_owned(), v);
            m.insert("n".to_owned(), Value::Array(Array::from(vec![int(1)])));
            Value::Object(m)
        };
    }
    v
}

/// Runs `f` on a thread with a 256 KiB stack, smaller than a tokio worker's,
/// and fails if it does not finish (a stack overflow aborts the process).
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the work on the small stack panicked");
}

#[test]
fn deep_mixed_values_survive_every_recursive_operation_on_a_small_stack() {
    on_small_stack(|| {
        let v = mixed(60_000);
        let c = v.clone();
        assert_eq!(c, v);
        assert_ne!(c, mixed(60_001));
        let printed = format!("{c:?}");
        assert!(printed.len() > 60_000 * 5, "printed {} bytes", printed.len());
        drop(c);
        drop(v);
        // Taking the contents out and dropping them elsewhere is also safe.
        if let Value::Array(a) = mixed(40_001) {
            drop(a.into_vec());
        } else {
            panic!("an odd depth ends with an array");
        }
        if let Value::Object(m) = mixed(40_000) {
            drop(m.into_inner());
        } else {
            panic!("an even depth ends with an object");
        }
    });
}

#[test]
fn wide_values_drop_on_a_small_stack() {
    on_small_stack(|| {
        let wide: Array = (0..10_000).map(|i| Value::Array(Array::from(vec![int(i)]))).collect();
        let mut m = Map::new();
        m.insert("wide".to_owned(), Value::Array(wide));
        m.insert("deep".to_owned(), mixed(30_000));
        let v = Value::Object(m);
        assert_eq!(v.clone(), v);
        drop(v);
    });
}

#[test]
fn deep_values_serialize_through_serde_on_a_small_stack() {
    on_small_stack(|| {
        let v = mixed(20_000);
        let text = serde_json::to_vec(&v).expect("serialize");
        // The same text as the Go-exact writer gives for it.
        assert_eq!(text, beehive_model::json::value_to_vec(&v).expect("encode"));
    });
}

#[test]
fn a_value_says_what_it_expected_when_serde_offers_something_else() {
    use serde::de::value::{BytesDeserializer, Error};
    use serde::Deserialize as _;
    let e = Value::deserialize(BytesDeserializer::<Error>::new(b"ab")).expect_err("bytes are not a JSON value");
    assert_eq!(e.to_string(), "invalid type: byte array, expected any JSON value");
}
