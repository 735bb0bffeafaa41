//! A minimal reader for SentencePiece `tokenizer.model` files: just the pieces, their scores and
//! types (`ModelProto.pieces`, field 1; `SentencePiece{piece = 1, score = 2, type = 3}` in
//! sentencepiece's `sentencepiece_model.proto`). Everything else in the protobuf is skipped.

/// One SentencePiece vocabulary entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SpmPiece {
    /// The piece text (`▁` marks a word start).
    pub piece: String,
    /// Its score (merge priority for BPE models, log-probability for unigram ones).
    pub score: f32,
    /// `SentencePiece.Type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub kind: u32,
}

struct Wire<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn bytes(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| "length overflows")?;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or("field runs past the end")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads one field; returns `(number, wire type, payload)` where the payload is the bytes of
    /// a length-delimited field, the 4 bytes of a fixed32, or empty otherwise (value in `scalar`).
    fn field(&mut self) -> Result<(u64, u8, &'a [u8], u64), String> {
        let key = self.varint()?;
        let (num, wt) = (key >> 3, (key & 7) as u8);
        match wt {
            0 => Ok((num, wt, &[], self.varint()?)),
            1 => Ok((num, wt, self.bytes(8)?, 0)),
            2 => {
                let n = self.varint()?;
                Ok((num, wt, self.bytes(n)?, 0))
            }
            5 => Ok((num, wt, self.bytes(4)?, 0)),
            other => Err(format!("unsupported protobuf wire type {other}")),
        }
    }
}

/// Reads the pieces of a `tokenizer.model`, in id order.
pub fn read_pieces(bytes: &[u8]) -> Result<Vec<SpmPiece>, String> {
    let mut top = Wire { b: bytes, pos: 0 };
    let mut out = Vec::new();
    while top.pos < bytes.len() {
        let (num, wt, payload, _) = top.field()?;
        if num != 1 || wt != 2 {
            continue;
        }
        let mut w = Wire { b: payload, pos: 0 };
        let mut piece = SpmPiece { piece: String::new(), score: 0.0, kind: 1 };
        while w.pos < payload.len() {
            let (n, t, p, v) = w.field()?;
            match (n, t) {
                (1, 2) => {
                    piece.piece = String::from_utf8(p.to_vec()).map_err(|_| "piece is not UTF-8")?;
                }
                (2, 5) => piece.score = f32::from_le_bytes(p.try_into().expect("4 bytes")),
                (3, 0) => piece.kind = v as u32,
                _ => {}
            }
        }
        out.push(piece);
    }
    if out.is_empty() {
        return Err("no pieces found; not a SentencePiece model".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, score: f32, kind: Option<u8>) -> Vec<u8> {
        let mut p = vec![0x0A, text.len() as u8];
        p.extend_from_slice(text.as_bytes());
        p.push(0x15);
        p.extend_from_slice(&score.to_le_bytes());
        if let Some(k) = kind {
            p.extend_from_slice(&[0x18, k]);
        }
        let mut out = vec![0x0A, p.len() as u8];
        out.extend(p);
        out
    }

    #[test]
    fn reads_pieces_and_skips_other_fields() {
        let mut b = piece("<unk>", 0.0, Some(2));
        b.extend(piece("▁the", -1.5, None));
        // An unrelated field (trainer_spec = 2) with nested bytes.
        b.extend_from_slice(&[0x12, 0x03, 0x08, 0x01, 0x10]);
        b.extend(piece("<0x41>", 0.0, Some(6)));
        let p = read_pieces(&b).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], SpmPiece { piece: "<unk>".into(), score: 0.0, kind: 2 });
        assert_eq!(p[1], SpmPiece { piece: "▁the".into(), score: -1.5, kind: 1 });
        assert_eq!(p[2].kind, 6);
    }

    #[test]
    fn hostile_input_is_an_error() {
        assert!(read_pieces(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]).is_err());
        assert!(read_pieces(&[0x0A]).is_err());
        assert!(read_pieces(&[0x0F]).is_err()); // wire type 7
        assert!(read_pieces(b"").is_err());
    }
}
