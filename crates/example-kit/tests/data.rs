//! The dataset readers on files the tests write: the real format round-trips, and every
//! malformed input gets an error that names the file and the problem.

use std::path::Path;

use burn::data::dataset::Dataset;
use example_kit::DataError;
use example_kit::mnist::{Mnist, MnistItem, MnistSplit, PIXELS, write_idx};
use example_kit::text::CharCorpus;

fn split(count: usize, seed: u8) -> MnistSplit {
    let items: Vec<MnistItem> = (0..count)
        .map(|i| MnistItem {
            image: (0..PIXELS)
                .map(|p| (p as u8).wrapping_mul(seed).wrapping_add(i as u8))
                .collect(),
            label: (i % 10) as u8,
        })
        .collect();
    MnistSplit::from_items(&items)
}

fn write_mnist(dir: &Path, gzip: bool) -> Mnist {
    let mnist = Mnist {
        train: split(12, 3),
        test: split(5, 7),
    };
    write_idx(dir, "train", &mnist.train, gzip).unwrap();
    write_idx(dir, "t10k", &mnist.test, gzip).unwrap();
    mnist
}

fn error_of(dir: &Path) -> DataError {
    Mnist::from_dir(dir).expect_err("malformed data must be rejected")
}

fn assert_error(error: DataError, file: &str, problem: &str) {
    let message = error.to_string();
    assert!(message.contains(file), "{message:?} should name {file}");
    assert!(
        message.contains(problem),
        "{message:?} should say {problem:?}"
    );
}

#[test]
fn mnist_round_trips_raw_and_gzip() {
    for gzip in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let written = write_mnist(dir.path(), gzip);
        let read = Mnist::from_dir(dir.path()).unwrap();
        assert_eq!(read, written);
        assert_eq!((read.train.len(), read.test.len()), (12, 5));
        assert_eq!(read.train.get(3).unwrap().label, 3);
    }
}

#[test]
fn mnist_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), false);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    assert_error(error_of(dir.path()), "t10k-labels-idx1-ubyte", "not found");
    assert_error(
        Mnist::from_dir(&dir.path().join("nowhere")).unwrap_err(),
        "nowhere",
        "is not a directory",
    );
}

/// Rewrites `name` in `dir` through `edit`.
fn corrupt(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn mnist_truncated_and_oversized_files() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), false);
    corrupt(dir.path(), "train-images-idx3-ubyte", |bytes| {
        bytes.truncate(bytes.len() - 100)
    });
    assert_error(
        error_of(dir.path()),
        "train-images-idx3-ubyte",
        "is truncated",
    );

    write_mnist(dir.path(), false);
    corrupt(dir.path(), "train-labels-idx1-ubyte", |bytes| bytes.push(1));
    assert_error(
        error_of(dir.path()),
        "train-labels-idx1-ubyte",
        "trailing bytes",
    );

    write_mnist(dir.path(), false);
    corrupt(dir.path(), "t10k-images-idx3-ubyte", |bytes| {
        bytes.truncate(10)
    });
    assert_error(
        error_of(dir.path()),
        "t10k-images-idx3-ubyte",
        "too short for an IDX images header",
    );
}

#[test]
fn mnist_wrong_magic_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), false);
    // A labels file where images are expected.
    std::fs::copy(
        dir.path().join("train-labels-idx1-ubyte"),
        dir.path().join("train-images-idx3-ubyte"),
    )
    .unwrap();
    assert_error(
        error_of(dir.path()),
        "train-images-idx3-ubyte",
        "magic number 2049, expected 2051",
    );

    write_mnist(dir.path(), false);
    corrupt(dir.path(), "train-images-idx3-ubyte", |bytes| {
        bytes[11] = 27
    });
    assert_error(
        error_of(dir.path()),
        "train-images-idx3-ubyte",
        "27×28 images, expected 28×28",
    );
}

#[test]
fn mnist_mismatched_counts_and_bad_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mnist = write_mnist(dir.path(), false);
    // 12 training images, 11 labels.
    let shorter = MnistSplit::from_items(
        &(0..11)
            .map(|i| mnist.train.get(i).unwrap())
            .collect::<Vec<_>>(),
    );
    let other = tempfile::tempdir().unwrap();
    write_idx(other.path(), "train", &shorter, false).unwrap();
    std::fs::copy(
        other.path().join("train-labels-idx1-ubyte"),
        dir.path().join("train-labels-idx1-ubyte"),
    )
    .unwrap();
    assert_error(
        error_of(dir.path()),
        "train-labels-idx1-ubyte",
        "holds 11 labels but",
    );

    write_mnist(dir.path(), false);
    corrupt(dir.path(), "t10k-labels-idx1-ubyte", |bytes| {
        bytes[8 + 3] = 12
    });
    assert_error(
        error_of(dir.path()),
        "t10k-labels-idx1-ubyte",
        "label 12 at index 3 is out of range 0–9",
    );
}

#[test]
fn mnist_broken_gzip() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), true);
    corrupt(dir.path(), "train-images-idx3-ubyte.gz", |bytes| {
        bytes.truncate(40)
    });
    assert_error(
        error_of(dir.path()),
        "train-images-idx3-ubyte.gz",
        "is not a valid gzip file",
    );
}

#[test]
fn download_failure_tells_how_to_run_offline() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 on loopback refuses the connection at once: no traffic leaves the machine.
    let error = example_kit::data::download(
        "http://127.0.0.1:9/train-images-idx3-ubyte.gz",
        &dir.path().join("train-images-idx3-ubyte.gz"),
        "0000",
        "Without internet, pass --data-dir DIR",
    )
    .unwrap_err();
    assert_error(
        error,
        "train-images-idx3-ubyte.gz",
        "could not download http://127.0.0.1:9/",
    );
}

#[test]
fn text_corpus_splits_and_encodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text.txt");
    let text = "héllo wörld, ".repeat(20);
    std::fs::write(&path, &text).unwrap();
    let corpus = CharCorpus::from_file(&path, 10).unwrap();
    let characters = text.chars().count();
    assert_eq!(corpus.train.len() + corpus.valid.len(), characters);
    assert_eq!(corpus.train.len(), characters * 9 / 10);
    assert_eq!(
        corpus.vocabulary,
        [' ', ',', 'd', 'h', 'l', 'o', 'r', 'w', 'é', 'ö']
    );
    let all: Vec<u32> = corpus.train.iter().chain(&corpus.valid).copied().collect();
    assert_eq!(corpus.decode(&all), text);
    assert_eq!(corpus.encode("héllo"), Ok(vec![3, 8, 4, 4, 5]));
    assert_eq!(corpus.encode("hex"), Err('e'));
}

#[test]
fn text_corpus_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.txt");
    std::fs::write(&path, "").unwrap();
    assert_error(
        CharCorpus::from_file(&path, 10).unwrap_err(),
        "input.txt",
        "is empty",
    );
    std::fs::write(&path, "short").unwrap();
    assert_error(
        CharCorpus::from_file(&path, 10).unwrap_err(),
        "input.txt",
        "holds 5 characters, fewer than the 10 needed",
    );
    std::fs::write(&path, b"valid \xff\xfe text").unwrap();
    assert_error(
        CharCorpus::from_file(&path, 1).unwrap_err(),
        "input.txt",
        "is not UTF-8 text (invalid byte at offset 6)",
    );
    assert_error(
        CharCorpus::from_file(&dir.path().join("absent.txt"), 1).unwrap_err(),
        "absent.txt",
        "cannot read",
    );
}
