//! Payload filters: a small JSON query on an event's payload that a webhook may set, so it
//! gets only the events it cares about (`{"amount": {"$gte": 100}, "status": "paid"}`).
//!
//! A filter is an object whose keys are dotted payload paths (`order.total`, `items.0.sku`)
//! or `$and`/`$or` (a non-empty list of filters); the keys of one object must all hold. A
//! path's value is a literal (implicit `$eq`) or an object of operators: `$eq`, `$ne`, `$in`,
//! `$gt`, `$gte`, `$lt`, `$lte`, `$exists`. Parsing checks everything and bounds the size, so
//! evaluation at fan-out cannot fail and costs little.

use crate::ValidationError;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// The largest filter, as compact JSON.
pub const MAX_FILTER_BYTES: usize = 4 * 1024;
/// How deeply `$and`/`$or` may nest.
pub const MAX_FILTER_DEPTH: usize = 5;
/// The most conditions (operators on a path) in one filter.
pub const MAX_FILTER_CONDITIONS: usize = 50;
/// The most values of one `$in`.
pub const MAX_IN_VALUES: usize = 100;
/// The most segments of one path, and its longest length.
pub const MAX_PATH_SEGMENTS: usize = 16;
pub const MAX_PATH_BYTES: usize = 256;

const OPERATORS: &str = "$eq, $ne, $in, $gt, $gte, $lt, $lte, $exists";

/// A parsed, valid filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every one holds (an object's keys, `$and`); empty holds always.
    All(Vec<Filter>),
    /// At least one holds (`$or`).
    Any(Vec<Filter>),
    /// One operator on the value at a payload path.
    Field {
        path: Vec<String>,
        condition: Condition,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Eq(Value),
    /// Holds when the field is missing too.
    Ne(Value),
    In(Vec<Value>),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    Exists(bool),
}

impl Filter {
    /// Parses and checks a filter; the error is on `field` and names the path and operator.
    pub fn parse(field: &str, raw: &Value) -> Result<Filter, ValidationError> {
        let error = |message: String| ValidationError::new(field, message);
        if raw.to_string().len() > MAX_FILTER_BYTES {
            return Err(error(format!(
                "must be at most {MAX_FILTER_BYTES} bytes as JSON"
            )));
        }
        let mut conditions = 0;
        parse_object(raw, "", 0, &mut conditions).map_err(error)
    }

    /// Whether an event's payload passes the filter.
    pub fn matches(&self, payload: &Value) -> bool {
        match self {
            Filter::All(all) => all.iter().all(|f| f.matches(payload)),
            Filter::Any(any) => any.iter().any(|f| f.matches(payload)),
            Filter::Field { path, condition } => condition.holds(lookup(payload, path)),
        }
    }
}

impl Condition {
    fn holds(&self, found: Option<&Value>) -> bool {
        match self {
            Condition::Eq(v) => found.is_some_and(|f| json_eq(f, v)),
            Condition::Ne(v) => !found.is_some_and(|f| json_eq(f, v)),
            Condition::In(values) => found.is_some_and(|f| values.iter().any(|v| json_eq(f, v))),
            Condition::Gt(v) => compare(found, v).is_some_and(|o| o == Ordering::Greater),
            Condition::Gte(v) => compare(found, v).is_some_and(|o| o != Ordering::Less),
            Condition::Lt(v) => compare(found, v).is_some_and(|o| o == Ordering::Less),
            Condition::Lte(v) => compare(found, v).is_some_and(|o| o != Ordering::Greater),
            Condition::Exists(wanted) => found.is_some() == *wanted,
        }
    }
}

/// Where in the filter a fault is, for the error message: `$or[1].amount`.
fn at(location: &str, key: &str) -> String {
    if location.is_empty() {
        key.to_string()
    } else {
        format!("{location}.{key}")
    }
}

fn parse_object(
    raw: &Value,
    location: &str,
    depth: usize,
    conditions: &mut usize,
) -> Result<Filter, String> {
    let Value::Object(object) = raw else {
        return Err(if location.is_empty() {
            "must be a JSON object of payload paths and conditions".to_string()
        } else {
            format!("at '{location}': must be a JSON object of payload paths and conditions")
        });
    };
    let mut all = Vec::with_capacity(object.len());
    for (key, value) in object {
        match key.as_str() {
            "$and" | "$or" => {
                let here = at(location, key);
                if depth + 1 > MAX_FILTER_DEPTH {
                    return Err(format!(
                        "at '{here}': $and/$or may nest at most {MAX_FILTER_DEPTH} deep"
                    ));
                }
                let Value::Array(items) = value else {
                    return Err(format!("at '{here}': {key} takes a list of filters"));
                };
                if items.is_empty() {
                    return Err(format!("at '{here}': {key} needs at least one filter"));
                }
                let parts = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        parse_object(item, &format!("{here}[{i}]"), depth + 1, conditions)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                all.push(if key == "$and" {
                    Filter::All(parts)
                } else {
                    Filter::Any(parts)
                });
            }
            operator if operator.starts_with('$') => {
                return Err(format!(
                    "at '{}': '{operator}' is not allowed here: a filter's keys are payload paths, $and or $or",
                    at(location, operator)
                ));
            }
            path => {
                let segments = parse_path(path).map_err(|e| format!("at '{path}': {e}"))?;
                let here = at(location, path);
                for condition in parse_conditions(value, &here)? {
                    *conditions += 1;
                    if *conditions > MAX_FILTER_CONDITIONS {
                        return Err(format!("has more than {MAX_FILTER_CONDITIONS} conditions"));
                    }
                    all.push(Filter::Field {
                        path: segments.clone(),
                        condition,
                    });
                }
            }
        }
    }
    Ok(match all.len() {
        1 => all.pop().expect("one"),
        _ => Filter::All(all),
    })
}

fn parse_path(path: &str) -> Result<Vec<String>, String> {
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("a path may be at most {MAX_PATH_BYTES} bytes"));
    }
    let segments: Vec<String> = path.split('.').map(String::from).collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err("a path is field names joined by single dots".into());
    }
    if segments.len() > MAX_PATH_SEGMENTS {
        return Err(format!(
            "a path may have at most {MAX_PATH_SEGMENTS} segments"
        ));
    }
    Ok(segments)
}

/// A path's value: a literal (`$eq`) or an object of operators.
fn parse_conditions(value: &Value, here: &str) -> Result<Vec<Condition>, String> {
    let Value::Object(operators) = value else {
        return Ok(vec![Condition::Eq(value.clone())]);
    };
    if operators.is_empty() || !operators.keys().all(|k| k.starts_with('$')) {
        return Err(format!(
            "at '{here}': give a literal value or an object of operators ({OPERATORS}); reach nested fields with a dotted path, compare a whole object with $eq"
        ));
    }
    operators
        .iter()
        .map(|(operator, operand)| parse_condition(operator, operand, here))
        .collect()
}

fn parse_condition(operator: &str, operand: &Value, here: &str) -> Result<Condition, String> {
    let fault = |message: &str| format!("at '{here}', operator '{operator}': {message}");
    let ordered = |operand: &Value| match operand {
        Value::Number(_) | Value::String(_) => Ok(operand.clone()),
        _ => Err(fault("takes a number or a string")),
    };
    Ok(match operator {
        "$eq" => Condition::Eq(operand.clone()),
        "$ne" => Condition::Ne(operand.clone()),
        "$in" => match operand {
            Value::Array(values) if values.len() <= MAX_IN_VALUES => Condition::In(values.clone()),
            Value::Array(_) => {
                return Err(fault(&format!("takes at most {MAX_IN_VALUES} values")));
            }
            _ => return Err(fault("takes a list of values")),
        },
        "$gt" => Condition::Gt(ordered(operand)?),
        "$gte" => Condition::Gte(ordered(operand)?),
        "$lt" => Condition::Lt(ordered(operand)?),
        "$lte" => Condition::Lte(ordered(operand)?),
        "$exists" => match operand {
            Value::Bool(wanted) => Condition::Exists(*wanted),
            _ => return Err(fault("takes true or false")),
        },
        _ => return Err(fault(&format!("unknown operator (use {OPERATORS})"))),
    })
}

/// The value at a path: object fields by name, array elements by index.
fn lookup<'a>(payload: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(payload, |value, segment| match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare_numbers(a, b) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => objects_eq(x, y),
        _ => a == b,
    }
}

fn objects_eq(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    x.len() == y.len()
        && x.iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
}

/// Numbers with numbers, strings with strings (RFC 3339 times order as strings); anything
/// else does not compare, so the condition does not hold.
fn compare(found: Option<&Value>, operand: &Value) -> Option<Ordering> {
    match (found?, operand) {
        (a @ Value::Number(_), b @ Value::Number(_)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

fn compare_numbers(a: &Value, b: &Value) -> Option<Ordering> {
    // Exactly for integers (an f64 loses precision past 2^53), by value otherwise.
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(raw: Value) -> Filter {
        Filter::parse("filter", &raw).unwrap()
    }

    fn fault(raw: Value) -> String {
        let error = Filter::parse("filter", &raw).unwrap_err();
        assert_eq!(error.field, "filter");
        error.message
    }

    #[test]
    fn literals_and_operators_match_payload_fields() {
        let payload = json!({
            "status": "paid",
            "amount": 120,
            "ratio": 0.5,
            "patient": {"id": "p1", "tags": ["vip", "new"]},
            "at": "2026-12-02T08:00:00Z",
            "note": null
        });
        let cases = [
            (json!({"status": "paid"}), true),
            (json!({"status": "open"}), false),
            (json!({"amount": 120.0}), true),
            (json!({"amount": {"$gt": 100, "$lte": 120}}), true),
            (json!({"amount": {"$gt": 120}}), false),
            (json!({"amount": {"$gte": 120}}), true),
            (json!({"amount": {"$lt": 120.5}}), true),
            (json!({"ratio": {"$lt": 1}}), true),
            (json!({"amount": {"$gt": "100"}}), false),
            (json!({"at": {"$gte": "2026-12-01T00:00:00Z"}}), true),
            (json!({"patient.id": "p1"}), true),
            (json!({"patient.tags.0": "vip"}), true),
            (json!({"patient.tags.5": "vip"}), false),
            (json!({"patient.tags": ["vip", "new"]}), true),
            (json!({"patient.id": {"$in": ["p2", "p1"]}}), true),
            (json!({"patient.id": {"$in": []}}), false),
            (json!({"status": {"$ne": "open"}}), true),
            (json!({"missing": {"$ne": "x"}}), true),
            (json!({"missing": {"$exists": false}}), true),
            (json!({"note": {"$exists": true}}), true),
            (json!({"note": null}), true),
            (json!({"missing": null}), false),
            (
                json!({"patient": {"$eq": {"tags": ["vip", "new"], "id": "p1"}}}),
                true,
            ),
            (json!({"status": "paid", "amount": {"$lt": 100}}), false),
            (json!({"$or": [{"status": "open"}, {"amount": 120}]}), true),
            (json!({"$or": [{"status": "open"}, {"amount": 1}]}), false),
            (
                json!({"$and": [{"status": "paid"}, {"$or": [{"amount": 1}, {"ratio": 0.5}]}]}),
                true,
            ),
            (json!({}), true),
        ];
        for (raw, expected) in cases {
            assert_eq!(filter(raw.clone()).matches(&payload), expected, "{raw}");
        }
    }

    #[test]
    fn big_integers_compare_exactly() {
        let payload = json!({"id": 9_007_199_254_740_993_u64});
        assert!(!filter(json!({"id": 9_007_199_254_740_992_u64})).matches(&payload));
        assert!(filter(json!({"id": {"$gt": 9_007_199_254_740_992_u64}})).matches(&payload));
    }

    #[test]
    fn faults_name_the_path_and_operator() {
        let message = fault(json!({"amount": {"$gtt": 5}}));
        assert!(
            message.contains("'amount'") && message.contains("'$gtt'"),
            "{message}"
        );
        let message = fault(json!({"$or": [{"a": 1}, {"b": {"$in": 3}}]}));
        assert!(
            message.contains("'$or[1].b'") && message.contains("'$in'"),
            "{message}"
        );
        let message = fault(json!({"a": {"$exists": "yes"}}));
        assert!(message.contains("'$exists'"), "{message}");
        let message = fault(json!({"a": {"$gt": [1]}}));
        assert!(message.contains("'$gt'"), "{message}");
        assert!(fault(json!({"$nor": []})).contains("'$nor'"));
        assert!(fault(json!({"$or": []})).contains("at least one"));
        assert!(fault(json!({"$and": {"a": 1}})).contains("list"));
        assert!(fault(json!({"$or": [1]})).contains("'$or[0]'"));
        assert!(fault(json!({"a..b": 1})).contains("'a..b'"));
        assert!(fault(json!({"a": {"b": 1}})).contains("dotted path"));
        assert!(fault(json!({"a": {"$eq": 1, "b": 2}})).contains("'a'"));
        assert!(fault(json!({"a": {}})).contains("'a'"));
        assert!(fault(json!([{"a": 1}])).contains("object"));
        assert!(fault(json!("a")).contains("object"));
    }

    #[test]
    fn size_depth_and_counts_are_bounded() {
        let mut deep = json!({"a": 1});
        for _ in 0..MAX_FILTER_DEPTH {
            deep = json!({"$and": [deep]});
        }
        assert!(Filter::parse("filter", &deep).is_ok());
        assert!(fault(json!({"$or": [deep]})).contains("nest"));

        let many: Map<String, Value> = (0..=MAX_FILTER_CONDITIONS)
            .map(|i| (format!("f{i}"), json!(i)))
            .collect();
        assert!(fault(Value::Object(many)).contains("conditions"));

        let values: Vec<Value> = (0..=MAX_IN_VALUES).map(|i| json!(i)).collect();
        assert!(fault(json!({"a": {"$in": values}})).contains("at most"));

        let long = "x".repeat(MAX_FILTER_BYTES);
        assert!(fault(json!({"a": long})).contains("bytes"));
        let mut long_path = Map::new();
        long_path.insert(vec!["a"; MAX_PATH_SEGMENTS + 1].join("."), json!(1));
        assert!(fault(Value::Object(long_path)).contains("segments"));
    }
}
