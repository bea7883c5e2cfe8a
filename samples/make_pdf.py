"""Write samples/corpus/lora.pdf: a minimal valid PDF (Helvetica text, two pages), no deps.

Run it again after editing PAGES: ``python samples/make_pdf.py``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

TITLE = "LoRA: Low-Rank Adaptation of Large Language Models"
PAGES = [
    [
        "LoRA: Low-Rank Adaptation",
        "",
        "LoRA is a parameter-efficient fine-tuning method introduced by Hu et al. in 2021. "
        "It freezes the pretrained weights of the model and trains two small low-rank "
        "matrices A and B for each adapted weight matrix.",
        "",
        "The update to a weight matrix W is the product BA, scaled by alpha divided by r, "
        "where r is the rank. Typical ranks are between 4 and 64, so only a tiny fraction "
        "of the parameters is trained. Matrix B is initialised to zero, so training starts "
        "from the unchanged pretrained model.",
        "",
        "On GPT-3 175B, LoRA reduced the number of trainable parameters by 10,000 times and "
        "the GPU memory requirement by 3 times compared with full fine-tuning.",
    ],
    [
        "Merging and serving adapters",
        "",
        "After training, the product BA can be merged into the frozen weights, so LoRA adds "
        "no extra inference latency. Alternatively, many small adapters can be kept separate "
        "and swapped at serving time on top of one shared base model.",
        "",
        "QLoRA",
        "",
        "QLoRA, introduced by Dettmers et al. in 2023, trains LoRA adapters on top of a base "
        "model quantized to 4 bits with the NF4 data type. It made it possible to fine-tune "
        "a 65-billion-parameter model on a single 48 GB GPU.",
        "",
        "Which layers to adapt",
        "",
        "The original paper adapted only the query and value projection matrices of the "
        "attention layers. Later practice often adapts all linear layers, which usually "
        "improves quality at a small extra cost.",
    ],
]


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _content(paragraphs: list[str]) -> bytes:
    lines = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
    for paragraph in paragraphs:
        for line in textwrap.wrap(paragraph, 80) or [""]:
            lines.append(f"({_escape(line)}) '")
    lines.append("ET")
    return "\n".join(lines).encode("latin-1")


def build() -> bytes:
    objects: list[bytes] = []
    n_pages = len(PAGES)
    page_ids = [4 + 2 * i for i in range(n_pages)]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, page in enumerate(PAGES):
        content = _content(page)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_ids[i] + 1} 0 R >>".encode()
        )
        objects.append(
            f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream"
        )
    info = len(objects) + 1
    objects.append(f"<< /Title ({_escape(TITLE)}) >>".encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {info} 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)


if __name__ == "__main__":
    target = Path(__file__).parent / "corpus" / "lora.pdf"
    target.write_bytes(build())
    print(f"wrote {target}")
