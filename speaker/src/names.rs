//! A few names (the interfaces a Service is answered on, the nodes of its endpoints), sorted and
//! without repeats, in one allocation. Kept once per Service, thousands of times: a `BTreeSet`
//! of one `String` allocates a whole B-tree leaf (room for eleven, 280 bytes), this 24.

use std::fmt;

#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Names(Box<[String]>);

impl Names {
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }
}

impl FromIterator<String> for Names {
    fn from_iter<I: IntoIterator<Item = String>>(names: I) -> Self {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort_unstable();
        names.dedup();
        Self(names.into_boxed_slice())
    }
}

impl<'a> IntoIterator for &'a Names {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_without_repeats() {
        let names: Names = ["eth1", "eth0", "eth1"].map(String::from).into_iter().collect();
        assert_eq!(names.iter().map(String::as_str).collect::<Vec<_>>(), ["eth0", "eth1"]);
        let same: Names = ["eth0", "eth1"].map(String::from).into_iter().collect();
        assert_eq!(names, same);
    }
}
