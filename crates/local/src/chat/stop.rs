//! User stop sequences matched on the streamed text: text that might be the beginning of a
//! stop sequence is held back until it is known not to be one, and the stop sequence itself is
//! never emitted.

/// The matcher for one generation.
#[derive(Debug)]
pub(crate) struct StopSequences {
    sequences: Vec<String>,
    longest: usize,
    /// Text received but not yet emitted: always shorter than the longest stop sequence
    /// between calls.
    pending: String,
}

impl StopSequences {
    /// Empty sequences are ignored (they would stop before the first token).
    pub(crate) fn new(sequences: &[String]) -> StopSequences {
        let sequences: Vec<String> = sequences
            .iter()
            .filter(|sequence| !sequence.is_empty())
            .cloned()
            .collect();
        let longest = sequences.iter().map(String::len).max().unwrap_or(0);
        StopSequences {
            sequences,
            longest,
            pending: String::new(),
        }
    }

    /// Takes the next piece of text and appends what can be emitted to `out`. Returns true
    /// when a stop sequence was found: `out` then holds the text before it, and generation
    /// must end.
    pub(crate) fn push(&mut self, text: &str, out: &mut String) -> bool {
        if self.sequences.is_empty() {
            out.push_str(text);
            return false;
        }
        self.pending.push_str(text);
        let found = self
            .sequences
            .iter()
            .filter_map(|sequence| self.pending.find(sequence.as_str()))
            .min();
        if let Some(index) = found {
            out.push_str(&self.pending[..index]);
            self.pending.clear();
            return true;
        }
        let held = self.held_suffix_len();
        let emit = self.pending.len() - held;
        out.push_str(&self.pending[..emit]);
        self.pending.drain(..emit);
        false
    }

    /// Generation ended for another reason: what was held back is ordinary text.
    pub(crate) fn finish(&mut self, out: &mut String) {
        out.push_str(&self.pending);
        self.pending.clear();
    }

    /// The length of the longest suffix of `pending` that begins some stop sequence.
    fn held_suffix_len(&self) -> usize {
        let len = self.pending.len();
        let earliest = len.saturating_sub(self.longest.saturating_sub(1));
        (earliest..len)
            .filter(|&start| self.pending.is_char_boundary(start))
            .find(|&start| {
                let suffix = &self.pending[start..];
                self.sequences
                    .iter()
                    .any(|sequence| sequence.starts_with(suffix))
            })
            .map_or(0, |start| len - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut matcher = StopSequences::new(&stops);
        let mut emitted = Vec::new();
        for piece in pieces {
            let mut out = String::new();
            let stopped = matcher.push(piece, &mut out);
            emitted.push(out);
            if stopped {
                return (emitted, true);
            }
        }
        let mut out = String::new();
        matcher.finish(&mut out);
        emitted.push(out);
        (emitted, false)
    }

    #[test]
    fn a_stop_sequence_across_pieces_is_held_back_and_never_emitted() {
        let (emitted, stopped) = run(&["END"], &["Hello E", "N", "D more"]);
        assert!(stopped);
        assert_eq!(emitted, ["Hello ", "", ""]);
    }

    #[test]
    fn held_text_that_is_not_a_stop_sequence_is_released() {
        let (emitted, stopped) = run(&["END"], &["Hello E", "x", " done"]);
        assert!(!stopped);
        assert_eq!(emitted.concat(), "Hello Ex done");
        assert_eq!(emitted[0], "Hello ");
        assert_eq!(emitted[1], "Ex");
    }

    #[test]
    fn the_earliest_of_several_stop_sequences_wins() {
        let (emitted, stopped) = run(&["world", "lo w"], &["Hello world"]);
        assert!(stopped);
        assert_eq!(emitted, ["Hel"]);
    }

    #[test]
    fn multibyte_text_is_split_on_character_boundaries() {
        let (emitted, stopped) = run(&["éé"], &["aé", "b", "éé"]);
        assert!(stopped);
        assert_eq!(emitted, ["a", "éb", ""]);
    }

    #[test]
    fn without_stop_sequences_everything_passes_through() {
        let (emitted, stopped) = run(&[""], &["a", "b"]);
        assert!(!stopped);
        assert_eq!(emitted, ["a", "b", ""]);
    }
}
