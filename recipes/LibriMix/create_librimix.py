#!/usr/bin/env python3
"""Create Libri2Mix/Libri3Mix-style mixtures (LibriMix method, Cosentino et al. 2020).

Official LibriMix from LibriSpeech + WHAM! with the published metadata files::

    python create_librimix.py --librispeech /data/LibriSpeech --wham /data/wham_noise \
        --metadata LibriMix/metadata/Libri2Mix/libri2mix_*.csv --out /data --types mix_clean mix_both

Fresh LibriMix-style mixtures from any LibriSpeech-layout folder (speaker-disjoint splits)::

    python create_librimix.py --librispeech /data/my_corpus --out /data --n_src 2 --seed 0 \
        --n_dev_speakers 20 --n_test_speakers 20 --freqs 8k --modes min
"""

import argparse
import sys

from spgm_lobes.data.librimix import create_librimix, generate_metadata


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--librispeech", required=True, help="LibriSpeech-layout root (<root>/<split>/<spk>/<chap>)")
    parser.add_argument("--out", required=True, help="output folder; Libri{n}Mix/ is created inside")
    parser.add_argument("--metadata", nargs="+", help="LibriMix metadata CSVs (libri2mix_<split>.csv); else fresh")
    parser.add_argument("--wham", help="WHAM!-layout noise folder (tr/cv/tt); needed for mix_both")
    parser.add_argument("--n_src", type=int, default=2, choices=(2, 3))
    parser.add_argument("--freqs", nargs="+", default=["8k"], choices=("8k", "16k"))
    parser.add_argument("--modes", nargs="+", default=["min"], choices=("min", "max"))
    parser.add_argument("--types", nargs="+", default=["mix_clean"], choices=("mix_clean", "mix_both"))
    parser.add_argument("--seed", type=int, default=0, help="seed of fresh metadata")
    parser.add_argument("--n_dev_speakers", type=int, default=40)
    parser.add_argument("--n_test_speakers", type=int, default=40)
    parser.add_argument("--n_train", type=int, help="training mixtures (default: each utterance once)")
    parser.add_argument("--n_dev", type=int, help="dev mixtures (default: each utterance once)")
    parser.add_argument("--n_test", type=int, help="test mixtures (default: each utterance once)")
    parser.add_argument("--min_duration", type=float, default=3.0, help="shortest utterance used (s)")
    parser.add_argument("--num_workers", type=int, default=0, help="worker processes (0: none)")
    parser.add_argument("--subtype", default="FLOAT", help="WAV subtype: FLOAT (exact sums) or PCM_16 (LibriMix's)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if "mix_both" in args.types and not args.wham:
        sys.exit("mix_both needs --wham <WHAM! noise folder>")
    metadata = args.metadata
    if not metadata:
        counts = {"train-360": args.n_train, "dev": args.n_dev, "test": args.n_test}
        metadata = list(
            generate_metadata(
                args.librispeech,
                f"{args.out}/Libri{args.n_src}Mix/metadata",
                n_src=args.n_src,
                seed=args.seed,
                n_dev_speakers=args.n_dev_speakers,
                n_test_speakers=args.n_test_speakers,
                n_mixtures={k: v for k, v in counts.items() if v is not None},
                wham_root=args.wham,
                min_duration=args.min_duration,
                num_workers=args.num_workers,
            ).values()
        )
    out = create_librimix(
        metadata,
        args.librispeech,
        args.out,
        sample_rates=tuple(int(f[:-1]) * 1000 for f in args.freqs),
        modes=tuple(args.modes),
        mix_types=tuple(args.types),
        wham_root=args.wham,
        subtype=args.subtype,
        num_workers=args.num_workers,
    )
    print(f"LibriMix written to {out}")


if __name__ == "__main__":
    main()
