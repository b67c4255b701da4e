//! Compression and decompression as streaming readers.

use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use async_compression::Level;
use tokio::io::{AsyncBufRead, AsyncRead};
use vertice_crds::Compression;

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;

/// Compresses what `input` yields. `level` must already be validated.
pub fn compressing<R>(compression: Compression, level: Option<i32>, input: R) -> BoxRead
where
    R: AsyncBufRead + Send + Unpin + 'static,
{
    let level = level
        .or(compression.default_level())
        .map(Level::Precise)
        .unwrap_or(Level::Default);
    match compression {
        // The frame checksum lets stock `zstd -d` detect damage on its own.
        Compression::Zstd => Box::new(ZstdEncoder::with_quality_and_params(
            input,
            level,
            &[CParameter::checksum_flag(true)],
        )),
        Compression::Gzip => Box::new(GzipEncoder::with_quality(input, level)),
        Compression::None => Box::new(input),
    }
}

/// Decompresses what `input` yields. Concatenated frames/members are accepted,
/// as `zstd -d` and `gzip -d` accept them.
pub fn decompressing<R>(compression: Compression, input: R) -> BoxRead
where
    R: AsyncBufRead + Send + Unpin + 'static,
{
    match compression {
        Compression::Zstd => {
            let mut decoder = ZstdDecoder::new(input);
            decoder.multiple_members(true);
            Box::new(decoder)
        }
        Compression::Gzip => {
            let mut decoder = GzipDecoder::new(input);
            decoder.multiple_members(true);
            Box::new(decoder)
        }
        Compression::None => Box::new(input),
    }
}

/// Checks a configured level against what the algorithm accepts.
pub fn validate_level(compression: Compression, level: Option<i32>) -> Result<(), String> {
    match (compression.level_range(), level) {
        (_, None) => Ok(()),
        (None, Some(_)) => Err(format!(
            "--compression-level has no meaning with --compression {compression}; drop it"
        )),
        (Some(range), Some(l)) if range.contains(&l) => Ok(()),
        (Some(range), Some(l)) => Err(format!(
            "--compression-level {l} is out of range for {compression}: use {}..={}",
            range.start(),
            range.end()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, BufReader};

    #[tokio::test]
    async fn every_codec_round_trips() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        for c in [Compression::Zstd, Compression::Gzip, Compression::None] {
            let mut packed = Vec::new();
            compressing(c, None, BufReader::new(std::io::Cursor::new(data.clone())))
                .read_to_end(&mut packed)
                .await
                .expect("compress");
            if c != Compression::None {
                assert!(
                    packed.len() < data.len() / 4,
                    "{c} should compress repetitive data"
                );
            }
            let mut unpacked = Vec::new();
            decompressing(c, BufReader::new(std::io::Cursor::new(packed)))
                .read_to_end(&mut unpacked)
                .await
                .expect("decompress");
            assert_eq!(unpacked, data, "{c}");
        }
    }

    #[test]
    fn levels_are_checked_per_algorithm() {
        assert!(validate_level(Compression::Zstd, Some(19)).is_ok());
        assert!(validate_level(Compression::Zstd, Some(23)).is_err());
        assert!(validate_level(Compression::Gzip, Some(0)).is_err());
        assert!(validate_level(Compression::None, Some(3)).is_err());
        assert!(validate_level(Compression::None, None).is_ok());
    }
}
