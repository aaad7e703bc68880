//! The otpauth URI as a QR code in SVG, for a web page to show as it is.

use qrcode::{EcLevel, QrCode, render::svg};

use tollgate_core::error::{AppError, AppResult};

/// Smallest side of the image, in pixels.
const MIN_SIDE: u32 = 200;

/// `text` as an SVG QR code (error correction M, black on white, with the
/// quiet zone scanners need).
pub fn svg(text: &str) -> AppResult<String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| AppError::internal(anyhow::anyhow!("drawing a QR code: {e}")))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(MIN_SIDE, MIN_SIDE)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_otpauth_uri_becomes_an_svg_document() {
        let image = svg("otpauth://totp/Tollgate:ada%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=Tollgate").unwrap();
        assert!(image.starts_with("<?xml"), "{}", &image[..40]);
        assert!(image.contains("<svg") && image.trim_end().ends_with("</svg>"));
    }
}
