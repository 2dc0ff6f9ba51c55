//! MNIST from its four IDX files (gzip-compressed or raw), with errors that name the file.
//!
//! Format (big-endian): images are magic 2051, count, rows, columns, then `count·rows·columns`
//! bytes; labels are magic 2049, count, then one byte 0–9 each.

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};
use flate2::read::GzDecoder;

use crate::data::{DataError, cache_dir, download, read_file};

/// Pixels per side of an MNIST image.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes.
pub const CLASSES: usize = 10;

const IMAGES_MAGIC: u32 = 2051;
const LABELS_MAGIC: u32 = 2049;
const URL: &str = "https://storage.googleapis.com/cvdf-datasets/mnist/";
/// (file stem, SHA-256 of the published .gz)
const FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    (
        "train-labels-idx1-ubyte",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    (
        "t10k-images-idx3-ubyte",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
];

/// One split of MNIST: `images` holds `len()·PIXELS` bytes, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct MnistSplit {
    images: Vec<u8>,
    labels: Vec<u8>,
}

/// One image and its label.
#[derive(Clone, Debug, PartialEq)]
pub struct MnistItem {
    /// 28×28 pixels, 0–255, row-major.
    pub image: Vec<u8>,
    /// The digit, 0–9.
    pub label: u8,
}

impl Dataset<MnistItem> for MnistSplit {
    /// The item at `index`; panics past the end, as Burn's `Dataset::get` does.
    fn get(&self, index: usize) -> Result<MnistItem, DatasetError> {
        let label = self.labels[index];
        let image = self.images[index * PIXELS..(index + 1) * PIXELS].to_vec();
        Ok(MnistItem { image, label })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}

impl MnistSplit {
    /// The first `count` items (all of them if there are fewer).
    pub fn truncated(mut self, count: usize) -> Self {
        let count = count.min(self.labels.len());
        self.labels.truncate(count);
        self.images.truncate(count * PIXELS);
        self
    }
}

/// MNIST's training (60,000) and test (10,000) splits.
#[derive(Clone, Debug, PartialEq)]
pub struct Mnist {
    /// The training split.
    pub train: MnistSplit,
    /// The test split.
    pub test: MnistSplit,
}

impl Mnist {
    /// Reads the four IDX files from `dir`, each as `NAME` or `NAME.gz`.
    pub fn from_dir(dir: &Path) -> Result<Self, DataError> {
        if !dir.is_dir() {
            return Err(DataError::new(dir, "is not a directory"));
        }
        let split = |images: &str, labels: &str| -> Result<MnistSplit, DataError> {
            let (images_path, labels_path) = (find(dir, images)?, find(dir, labels)?);
            let images = parse_images(&images_path, &decompress(&images_path)?)?;
            let labels = parse_labels(&labels_path, &decompress(&labels_path)?)?;
            if images.len() / PIXELS != labels.len() {
                return Err(DataError::new(
                    labels_path,
                    format!(
                        "holds {} labels but {} holds {} images",
                        labels.len(),
                        images_path.display(),
                        images.len() / PIXELS
                    ),
                ));
            }
            Ok(MnistSplit { images, labels })
        };
        Ok(Self {
            train: split(FILES[0].0, FILES[1].0)?,
            test: split(FILES[2].0, FILES[3].0)?,
        })
    }

    /// Reads MNIST from `dir`, or downloads the official files into the cache without one.
    pub fn load(dir: Option<&Path>) -> Result<Self, DataError> {
        match dir {
            Some(dir) => Self::from_dir(dir),
            None => {
                let cache = cache_dir("mnist");
                for (stem, sha256) in FILES {
                    let name = format!("{stem}.gz");
                    let hint = "Without internet, pass --data-dir DIR with the four MNIST IDX files (.gz or raw)";
                    download(&format!("{URL}{name}"), &cache.join(&name), sha256, hint)?;
                }
                Self::from_dir(&cache)
            }
        }
    }
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))]
        .into_iter()
        .find(|path| path.is_file())
        .ok_or_else(|| {
            DataError::new(
                dir.join(stem),
                "not found (looked for the raw file and .gz)",
            )
        })
}

fn decompress(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_file(path)?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut raw = Vec::new();
    GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut raw)
        .map_err(|error| DataError::new(path, format!("is not a valid gzip file: {error}")))?;
    Ok(raw)
}

/// The big-endian u32 header fields, after checking the magic number.
fn header<const N: usize>(
    path: &Path,
    bytes: &[u8],
    magic: u32,
    kind: &str,
) -> Result<[u32; N], DataError> {
    if bytes.len() < 4 * N {
        return Err(DataError::new(
            path,
            format!(
                "is {} bytes, too short for an IDX {kind} header of {} bytes",
                bytes.len(),
                4 * N
            ),
        ));
    }
    let fields: [u32; N] = std::array::from_fn(|i| {
        u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"))
    });
    if fields[0] != magic {
        return Err(DataError::new(
            path,
            format!(
                "has magic number {}, expected {magic} for IDX {kind}",
                fields[0]
            ),
        ));
    }
    Ok(fields)
}

/// Checks that the body after a `header_len`-byte header holds exactly `expected` bytes.
fn body<'a>(
    path: &Path,
    bytes: &'a [u8],
    header_len: usize,
    expected: usize,
    what: &str,
) -> Result<&'a [u8], DataError> {
    let body = &bytes[header_len..];
    if body.len() != expected {
        let problem = if body.len() < expected {
            "is truncated"
        } else {
            "has trailing bytes"
        };
        return Err(DataError::new(
            path,
            format!(
                "{problem}: its header announces {what} ({expected} bytes) but {} bytes follow",
                body.len()
            ),
        ));
    }
    Ok(body)
}

fn parse_images(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    let [_, count, rows, columns] = header::<4>(path, bytes, IMAGES_MAGIC, "images")?;
    if (rows as usize, columns as usize) != (SIDE, SIDE) {
        return Err(DataError::new(
            path,
            format!("holds {rows}×{columns} images, expected {SIDE}×{SIDE}"),
        ));
    }
    let count = count as usize;
    Ok(body(path, bytes, 16, count * PIXELS, &format!("{count} images"))?.to_vec())
}

fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    let [_, count] = header::<2>(path, bytes, LABELS_MAGIC, "labels")?;
    let count = count as usize;
    let labels = body(path, bytes, 8, count, &format!("{count} labels"))?;
    if let Some(index) = labels.iter().position(|&label| label as usize >= CLASSES) {
        return Err(DataError::new(
            path,
            format!(
                "label {} at index {index} is out of range 0–9",
                labels[index]
            ),
        ));
    }
    Ok(labels.to_vec())
}

/// The 28×28 grey pixels of a PNG or binary PGM (P5) image, for a prediction: colour is turned
/// to grey, and another size is resized to 28×28 (the second value says so). MNIST digits are
/// light on a dark background.
pub fn read_image(path: &Path) -> Result<(Vec<u8>, bool), DataError> {
    let bytes = read_file(path)?;
    let format = image::guess_format(&bytes)
        .ok()
        .filter(|format| matches!(format, image::ImageFormat::Png | image::ImageFormat::Pnm))
        .ok_or_else(|| DataError::new(path, "is neither a PNG nor a binary PGM (P5) image"))?;
    let decoded = image::load_from_memory_with_format(&bytes, format)
        .map_err(|error| DataError::new(path, format!("cannot be decoded: {error}")))?;
    let grey = decoded.to_luma8();
    if grey.width() == 0 || grey.height() == 0 {
        return Err(DataError::new(path, "is an empty image"));
    }
    let resized = grey.dimensions() != (SIDE as u32, SIDE as u32);
    let grey = if resized {
        let side = SIDE as u32;
        image::imageops::resize(&grey, side, side, image::imageops::FilterType::Triangle)
    } else {
        grey
    };
    Ok((grey.into_raw(), resized))
}

/// Writes `split` as the two IDX files `{stem}-images-idx3-ubyte` and `{stem}-labels-idx1-ubyte`
/// in `dir` (gzip-compressed when `gzip`): the inverse of the reader, for tests and subsets.
pub fn write_idx(dir: &Path, stem: &str, split: &MnistSplit, gzip: bool) -> std::io::Result<()> {
    use std::io::Write;
    let count = split.len() as u32;
    let mut images = [IMAGES_MAGIC, count, SIDE as u32, SIDE as u32]
        .iter()
        .flat_map(|field| field.to_be_bytes())
        .collect::<Vec<_>>();
    images.extend_from_slice(&split.images);
    let mut labels = [LABELS_MAGIC, count]
        .iter()
        .flat_map(|field| field.to_be_bytes())
        .collect::<Vec<_>>();
    labels.extend_from_slice(&split.labels);
    for (name, bytes) in [
        (format!("{stem}-images-idx3-ubyte"), images),
        (format!("{stem}-labels-idx1-ubyte"), labels),
    ] {
        if gzip {
            let file = std::fs::File::create(dir.join(format!("{name}.gz")))?;
            let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            encoder.write_all(&bytes)?;
            encoder.finish()?;
        } else {
            std::fs::write(dir.join(name), bytes)?;
        }
    }
    Ok(())
}

impl MnistSplit {
    /// A split made of `items`, e.g. synthetic data for tests.
    pub fn from_items(items: &[MnistItem]) -> Self {
        Self {
            images: items
                .iter()
                .flat_map(|item| item.image.iter().copied())
                .collect(),
            labels: items.iter().map(|item| item.label).collect(),
        }
    }
}

/// `count` synthetic digits for tests: a bright 6×6 block whose place encodes the label, over
/// faint noise; `seed` draws the noise.
pub fn synthetic(count: usize, seed: u64) -> MnistSplit {
    let mut state = seed;
    let items: Vec<MnistItem> = (0..count)
        .map(|i| {
            let label = (i % 10) as u8;
            let (top, left) = (4 + 12 * (label as usize / 5), 1 + 5 * (label as usize % 5));
            let image = (0..PIXELS)
                .map(|p| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let (row, column) = (p / SIDE, p % SIDE);
                    let inside =
                        (top..top + 6).contains(&row) && (left..left + 6).contains(&column);
                    if inside { 230 } else { (state >> 59) as u8 * 4 }
                })
                .collect();
            MnistItem { image, label }
        })
        .collect();
    MnistSplit::from_items(&items)
}
