//! Validated names and identifiers shared by the resources.
use std::fmt;

/// A Batch AI resource name: 1 to 64 letters, digits, `-` or `_`, as the service accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// Why a text is not a [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{text:?} has {chars} characters; a name has 1 to 64")]
    Length { text: String, chars: usize },
    #[error("{text:?} contains {bad:?}; a name may contain only letters, digits, '-' and '_'")]
    Character { text: String, bad: char },
}

impl Name {
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.is_empty() || text.len() > 64 {
            return Err(NameError::Length {
                text: text.to_owned(),
                chars: text.chars().count(),
            });
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(NameError::Character {
                text: text.to_owned(),
                bad,
            });
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        let cases: [(&str, bool); 8] = [
            ("data", true),
            ("data-1_B", true),
            (&long, true),
            ("", false),
            (&too_long, false),
            ("with space", false),
            ("dot.name", false),
            ("ünï", false),
        ];
        for (input, ok) in cases {
            assert_eq!(Name::parse(input).is_ok(), ok, "{input:?}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |text: &str| Name::parse(text).err().map(|e| e.to_string());
        assert_eq!(
            err("").as_deref(),
            Some("\"\" has 0 characters; a name has 1 to 64")
        );
        assert_eq!(
            err("dot.name").as_deref(),
            Some("\"dot.name\" contains '.'; a name may contain only letters, digits, '-' and '_'")
        );
    }
}
