"""The papers behind hf_unlearn's methods, in one table: every trainer's ``_paper``, the model cards' citations and
the docs read it. Keys are the methods' recipe names (``hf_unlearn.registry``; ``tofu`` for the two IDK methods that
TOFU introduced), plus the representation callbacks and weight-space methods."""

from __future__ import annotations

__all__ = ["PAPERS", "paper"]

PAPERS: dict[str, dict[str, str]] = {
    "grad_ascent": {
        "title": "Knowledge Unlearning for Mitigating Privacy Risks in Language Models",
        "id": "2210.01504",
        "citation": (
            "@inproceedings{jang2023knowledge,\n"
            "    title        = {{Knowledge Unlearning for Mitigating Privacy Risks in Language Models}},\n"
            "    author       = {Joel Jang and Dongkeun Yoon and Sohee Yang and Sungmin Cha and Moontae Lee and\n"
            "                    Lajanugen Logeswaran and Minjoon Seo},\n"
            "    year         = 2023,\n"
            "    booktitle    = {Proceedings of the 61st Annual Meeting of the Association for Computational\n"
            "                    Linguistics},\n"
            "}"
        ),
    },
    "grad_diff": {
        "title": "Large Language Model Unlearning",
        "id": "2310.10683",
        "citation": (
            "@article{yao2023large,\n"
            "    title        = {{Large Language Model Unlearning}},\n"
            "    author       = {Yuanshun Yao and Xiaojun Xu and Yang Liu},\n"
            "    year         = 2023,\n"
            "    journal      = {arXiv preprint arXiv:2310.10683},\n"
            "}"
        ),
    },
    "npo": {
        "title": "Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning",
        "id": "2404.05868",
        "citation": (
            "@inproceedings{zhang2024negative,\n"
            "    title        = {{Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning}},\n"
            "    author       = {Ruiqi Zhang and Licong Lin and Yu Bai and Song Mei},\n"
            "    year         = 2024,\n"
            "    booktitle    = {First Conference on Language Modeling},\n"
            "}"
        ),
    },
    "simnpo": {
        "title": "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning",
        "id": "2410.07163",
        "citation": (
            "@article{fan2024simplicity,\n"
            "    title        = {{Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning}},\n"
            "    author       = {Chongyu Fan and Jiancheng Liu and Licong Lin and Jinghan Jia and Ruiqi Zhang and Song\n"
            "                    Mei and Sijia Liu},\n"
            "    year         = 2024,\n"
            "    journal      = {arXiv preprint arXiv:2410.07163},\n"
            "}"
        ),
    },
    "tofu": {  # IdkSFT and IdkDPO: the refusal baselines of TOFU
        "title": "TOFU: A Task of Fictitious Unlearning for LLMs",
        "id": "2401.06121",
        "citation": (
            "@inproceedings{maini2024tofu,\n"
            "    title        = {{TOFU: A Task of Fictitious Unlearning for LLMs}},\n"
            "    author       = {Pratyush Maini and Zhili Feng and Avi Schwarzschild and Zachary C. Lipton and\n"
            "                    J. Zico Kolter},\n"
            "    year         = 2024,\n"
            "    booktitle    = {First Conference on Language Modeling},\n"
            "}"
        ),
    },
    "undial": {
        "title": "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large Language Models",
        "id": "2402.10052",
        "citation": (
            "@inproceedings{dong2025undial,\n"
            "    title        = {{UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large\n"
            "                    Language Models}},\n"
            "    author       = {Yijiang River Dong and Hongzhou Lin and Mikhail Belkin and Ramon Huerta and\n"
            "                    Ivan Vuli{\\'c}},\n"
            "    year         = 2025,\n"
            "    booktitle    = {Proceedings of the 2025 Conference of the Nations of the Americas Chapter of the\n"
            "                    Association for Computational Linguistics},\n"
            "}"
        ),
    },
    "wga": {
        "title": "Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond",
        "id": "2502.19301",
        "citation": (
            "@inproceedings{wang2025rethinking,\n"
            "    title        = {{Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond}},\n"
            "    author       = {Qizhou Wang and Jin Peng Zhou and Zhanke Zhou and Saebyeol Shin and Bo Han and\n"
            "                    Kilian Q. Weinberger},\n"
            "    year         = 2025,\n"
            "    booktitle    = {The Thirteenth International Conference on Learning Representations},\n"
            "}"
        ),
    },
    "satimp": {
        "title": "Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning",
        "id": "2505.11953",
        "citation": (
            "@inproceedings{yang2025exploring,\n"
            "    title        = {{Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning}},\n"
            "    author       = {Puning Yang and Qizhou Wang and Zhuo Huang and Tongliang Liu and Chengqi Zhang and\n"
            "                    Bo Han},\n"
            "    year         = 2025,\n"
            "    booktitle    = {Forty-second International Conference on Machine Learning},\n"
            "}"
        ),
    },
    "ceu": {
        "title": "CE-U: Cross Entropy Unlearning",
        "id": "2503.01224",
        "citation": (
            "@article{yang2025ceu,\n"
            "    title        = {{CE-U: Cross Entropy Unlearning}},\n"
            "    author       = {Bo Yang},\n"
            "    year         = 2025,\n"
            "    journal      = {arXiv preprint arXiv:2503.01224},\n"
            "}"
        ),
    },
    "pdu": {
        "title": "Constrained Entropic Unlearning: A Primal-Dual Framework for Large Language Models",
        "id": "2506.05314",
        "citation": (
            "@article{entesari2025constrained,\n"
            "    title        = {{Constrained Entropic Unlearning: A Primal-Dual Framework for Large Language\n"
            "                    Models}},\n"
            "    author       = {Taha Entesari and Arman Hatami and Rinat Khaziev and Anil Ramakrishna and\n"
            "                    Mahyar Fazlyab},\n"
            "    year         = 2025,\n"
            "    journal      = {arXiv preprint arXiv:2506.05314},\n"
            "}"
        ),
    },
    "o3": {
        "title": "On Large Language Model Continual Unlearning",
        "id": "2407.10223",
        "citation": (
            "@inproceedings{gao2025o3,\n"
            "    title        = {{On Large Language Model Continual Unlearning}},\n"
            "    author       = {Chongyang Gao and Lixu Wang and Kaize Ding and Chenkai Weng and Xiao Wang and Qi Zhu},\n"
            "    year         = 2025,\n"
            "    booktitle    = {The Thirteenth International Conference on Learning Representations},\n"
            "}"
        ),
    },
    "reasoned_idk": {
        "title": "R-TOFU: Unlearning in Large Reasoning Models",
        "id": "2505.15214",
        "citation": (
            "@article{yoon2025rtofu,\n"
            "    title        = {{R-TOFU: Unlearning in Large Reasoning Models}},\n"
            "    author       = {Sangyeon Yoon and Wonje Jeung and Albert No},\n"
            "    year         = 2025,\n"
            "    journal      = {arXiv preprint arXiv:2505.15214},\n"
            "}"
        ),
    },
    "rmu": {
        "title": "The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning",
        "id": "2403.03218",
        "citation": (
            "@article{li2024wmdp,\n"
            "    title        = {{The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning}},\n"
            "    journal      = {arXiv preprint arXiv:2403.03218},\n"
            "}"
        ),
    },
    "adaptive_rmu": {
        "title": "On Effects of Steering Latent Representation for Large Language Model Unlearning",
        "id": "2408.06223",
        "citation": (
            "@article{dang2025adaptive,\n"
            "    title        = {{On Effects of Steering Latent Representation for Large Language Model Unlearning}},\n"
            "    journal      = {arXiv preprint arXiv:2408.06223},\n"
            "}"
        ),
    },
    "attention_shifting": {
        "title": "Wisdom is Knowing What not to Say: Hallucination-Free LLMs Unlearning via Attention Shifting",
        "id": "2510.17210",
        "citation": (
            "@article{tan2025wisdom,\n"
            "    title        = {{Wisdom is Knowing What not to Say: Hallucination-Free LLMs Unlearning via Attention Shifting}},\n"
            "    journal      = {arXiv preprint arXiv:2510.17210},\n"
            "}"
        ),
    },
    "task_vector": {
        "title": "Editing Models with Task Arithmetic",
        "id": "2212.04089",
        "citation": (
            "@article{ilharco2023editing,\n"
            "    title        = {{Editing Models with Task Arithmetic}},\n"
            "    journal      = {arXiv preprint arXiv:2212.04089},\n"
            "}"
        ),
    },
    "sta": {
        "title": "Beyond Task Vectors: Selective Task Arithmetic Based on Importance Metrics",
        "id": "2411.16139",
        "citation": (
            "@article{tian2024beyond,\n"
            "    title        = {{Beyond Task Vectors: Selective Task Arithmetic Based on Importance Metrics}},\n"
            "    journal      = {arXiv preprint arXiv:2411.16139},\n"
            "}"
        ),
    },
}


def paper(name: str) -> dict[str, str]:
    """The paper of method ``name`` (``title``, arXiv ``id``, BibTeX ``citation``); a clear error lists the known."""
    try:
        return PAPERS[name]
    except KeyError:
        raise ValueError(f"No paper recorded for {name!r}; known: {', '.join(PAPERS)}.") from None
