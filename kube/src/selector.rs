//! Kubernetes label selectors (`matchLabels`, `matchExpressions`), matched against labels.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// Whether `selector` is well formed: known operators, with values where they need them.
pub fn validate(selector: &LabelSelector) -> Result<(), String> {
    for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!("matchExpressions[{i}]: {} needs values", e.operator));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!("matchExpressions[{i}]: {} takes no values", e.operator));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => return Err(format!("matchExpressions[{i}]: unknown operator {other:?}")),
        }
    }
    Ok(())
}

/// Whether `labels` satisfy `selector` (an empty selector matches everything; an invalid one
/// nothing).
pub fn matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let by_labels = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn matching() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        assert!(matches(&LabelSelector::default(), &web));
        let by_label = LabelSelector { match_labels: Some(labels(&[("app", "web")])), ..Default::default() };
        assert!(matches(&by_label, &web) && !matches(&by_label, &labels(&[("app", "db")])));
        let cases = [
            (expr("tier", "In", &["front", "mid"]), true),
            (expr("tier", "NotIn", &["front"]), false),
            (expr("zone", "NotIn", &["a"]), true),
            (expr("app", "Exists", &[]), true),
            (expr("app", "DoesNotExist", &[]), false),
            (expr("app", "Gt", &["1"]), false),
        ];
        for (e, want) in cases {
            let s = LabelSelector { match_expressions: Some(vec![e.clone()]), ..Default::default() };
            assert_eq!(matches(&s, &web), want, "{e:?}");
        }
    }

    #[test]
    fn validation() {
        let s = |e| LabelSelector { match_expressions: Some(vec![e]), ..Default::default() };
        assert_eq!(validate(&s(expr("a", "In", &[]))).unwrap_err(), "matchExpressions[0]: In needs values");
        assert_eq!(
            validate(&s(expr("a", "Exists", &["x"]))).unwrap_err(),
            "matchExpressions[0]: Exists takes no values"
        );
        assert_eq!(
            validate(&s(expr("a", "Gt", &["1"]))).unwrap_err(),
            "matchExpressions[0]: unknown operator \"Gt\""
        );
        assert!(validate(&s(expr("a", "NotIn", &["x"]))).is_ok());
    }
}
