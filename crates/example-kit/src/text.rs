//! A character corpus from any UTF-8 text file: first 90% for training, last 10% for validation.

use std::path::Path;

use crate::data::{DataError, cache_dir, download, read_file};

const SHAKESPEARE_URL: &str =
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";
const SHAKESPEARE_SHA256: &str = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed";

/// The characters of a text as token ids, with its vocabulary and split.
#[derive(Clone, Debug, PartialEq)]
pub struct CharCorpus {
    /// Distinct characters, sorted; a token is an index into it.
    pub vocabulary: Vec<char>,
    /// Training tokens: the first 90% of the text.
    pub train: Vec<u32>,
    /// Validation tokens: the last 10%.
    pub valid: Vec<u32>,
}

impl CharCorpus {
    /// Builds the corpus from `text`, which must hold at least `min_chars` characters.
    pub fn from_text(text: &str, source: &Path, min_chars: usize) -> Result<Self, DataError> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() < min_chars {
            let problem = match chars.len() {
                0 => "is empty".to_string(),
                n => format!("holds {n} characters, fewer than the {min_chars} needed"),
            };
            return Err(DataError::new(source, problem));
        }
        let mut vocabulary = chars.clone();
        vocabulary.sort_unstable();
        vocabulary.dedup();
        let tokens: Vec<u32> = chars
            .iter()
            .map(|c| vocabulary.binary_search(c).expect("in the vocabulary") as u32)
            .collect();
        let split = tokens.len() * 9 / 10;
        Ok(Self {
            vocabulary,
            valid: tokens[split..].to_vec(),
            train: tokens[..split].to_vec(),
        })
    }

    /// Reads a UTF-8 text file.
    pub fn from_file(path: &Path, min_chars: usize) -> Result<Self, DataError> {
        let bytes = read_file(path)?;
        let text = String::from_utf8(bytes).map_err(|error| {
            let at = error.utf8_error().valid_up_to();
            DataError::new(
                path,
                format!("is not UTF-8 text (invalid byte at offset {at})"),
            )
        })?;
        Self::from_text(&text, path, min_chars)
    }

    /// Reads `path`, or downloads tiny-shakespeare into the cache without one.
    pub fn load(path: Option<&Path>, min_chars: usize) -> Result<Self, DataError> {
        match path {
            Some(path) => Self::from_file(path, min_chars),
            None => {
                let cached = cache_dir("tinyshakespeare").join("input.txt");
                let hint = "Without internet, pass --text FILE (any UTF-8 text)";
                download(SHAKESPEARE_URL, &cached, SHAKESPEARE_SHA256, hint)?;
                Self::from_file(&cached, min_chars)
            }
        }
    }

    /// The text of `tokens`.
    pub fn decode(&self, tokens: &[u32]) -> String {
        tokens
            .iter()
            .map(|&token| self.vocabulary[token as usize])
            .collect()
    }

    /// The tokens of `text`, or the first character not in the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, char> {
        text.chars()
            .map(|c| {
                self.vocabulary
                    .binary_search(&c)
                    .map(|i| i as u32)
                    .map_err(|_| c)
            })
            .collect()
    }
}
