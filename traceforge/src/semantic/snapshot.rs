//! Semantic snapshots on insta's machinery: the approved answer is an ordinary `.snap` file, and
//! a comparator lets the assertion pass while the new answer stays within the threshold of it.
//! A new or changed answer becomes a `.snap.new` that `cargo insta review` accepts.

use insta::internals::SnapshotContents;
use insta::{Comparator, DefaultComparator, Snapshot};

use super::Semantic;

/// An insta [`Comparator`] that compares text snapshots by meaning. `assert_semantic_snapshot!`
/// installs it; install it yourself to give any insta text assertion the same behaviour:
///
/// ```no_run
/// use traceforge::semantic::{Semantic, SemanticComparator};
/// # let answer = "";
/// let mut settings = insta::Settings::clone_current();
/// settings.set_comparator(Box::new(SemanticComparator::new(Semantic::for_crate(env!("CARGO_MANIFEST_DIR")))));
/// settings.bind(|| insta::assert_snapshot!(answer));
/// ```
#[derive(Clone, Debug)]
pub struct SemanticComparator {
    semantic: Semantic,
}

impl SemanticComparator {
    /// Compares with `semantic`'s threshold, model, cache and mode.
    pub fn new(semantic: Semantic) -> SemanticComparator {
        SemanticComparator { semantic }
    }
}

fn text(snapshot: &Snapshot) -> Option<String> {
    match snapshot.contents() {
        SnapshotContents::Text(text) => Some(text.to_string()),
        SnapshotContents::Binary(_) => None,
    }
}

impl Comparator for SemanticComparator {
    fn matches(&self, reference: &Snapshot, test: &Snapshot) -> bool {
        let (Some(approved), Some(new)) = (text(reference), text(test)) else {
            return DefaultComparator.matches(reference, test);
        };
        match self.semantic.compare(&new, approved.as_str()) {
            Ok(comparison) if comparison.passed() => true,
            Ok(comparison) => {
                // insta prints the text diff next; this says why the texts count as different.
                eprintln!(
                    "{}Review the new answer with `cargo insta review`: accepting it makes it the approved one.",
                    comparison
                        .describe("semantic snapshot failed: the new answer does not mean what the approved one does")
                );
                false
            }
            // insta's comparator cannot return an error; the assertion is the right place to fail.
            Err(error) => panic!("semantic snapshot: {error}"),
        }
    }

    fn dyn_clone(&self) -> Box<dyn Comparator> {
        Box::new(self.clone())
    }
}
