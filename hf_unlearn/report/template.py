"""The report page's markup: one Jinja template, autoescaped (forget-set text may contain anything), with the
styles inline and no script."""

from __future__ import annotations

from typing import Any

__all__ = ["render"]

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · hf_unlearn report</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f; margin: 0;
       background: #f6f7f9; }
main { max-width: 1100px; margin: 0 auto; padding: 1.2rem 1.4rem 3rem; }
header h1 { font-size: 1.6rem; margin: .4rem 0; }
section { background: #fff; border: 1px solid #e2e4e8; border-radius: 8px; padding: 1rem 1.2rem; margin: 1rem 0; }
section h2 { font-size: 1.15rem; margin: 0 0 .6rem; }
.local { background: #fff4e5; border: 1px solid #f0b463; border-radius: 8px; padding: .6rem 1rem; }
.muted { color: #6b6f76; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid #eceef1; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f4f6; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.figure svg { max-width: 100%; height: auto; }
.kind { border-radius: 4px; padding: 0 .35rem; font-size: 12px; }
.kind-leak { background: #fde2e1; color: #a1130d; }
.kind-refusal { background: #e3f1e6; color: #1c6b2d; }
.kind-hallucination { background: #fff0cc; color: #8a5a00; }
.kind-degenerate { background: #ececec; color: #444; }
.kind-other { background: #e8eefc; color: #23408e; }
tr.best td { background: #eef8ee; }
nav a { margin-right: .8rem; }
dl.settings { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .8rem; margin: .4rem 0; }
dl.settings dt { color: #6b6f76; }
dl.settings dd { margin: 0; }
</style>
</head>
<body>
<main>
<header id="top">
<h1>{{ title }}</h1>
<p class="local" id="local-only"><strong>Local report: do not publish.</strong> This page shows forget-set questions,
answers and the model's generations. <code>hf-unlearn push</code> never uploads it (only the model, its card, the
aggregate <code>results.json</code> and the PNG figures go up).</p>
{% if settings %}<dl class="settings">{% for k, v in settings.items() %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}
</dl>{% endif %}
<p class="muted">Written {{ created }} by hf_unlearn.{% if not plots %} Figures need matplotlib:
<code>pip install 'hf-unlearn[plots]'</code>; the tables below are complete without them.{% endif %}</p>
<nav>{% if headline %}<a href="#headline">Headline</a>{% endif %}
{% if history %}<a href="#curves">Training</a>{% endif %}
{% if mia %}<a href="#mia">Membership inference</a>{% endif %}{% if items %}<a href="#items">Forget items</a>{% endif %}
{% if robustness %}<a href="#robustness">Robustness</a>{% endif %}{% if search %}<a href="#search">Search</a>{% endif %}
<a href="#reading">How to read</a></nav>
</header>

{% if headline %}
<section id="headline">
<h2>Headline: the models side by side</h2>
<p class="muted">The goal is the retain model (never trained on the forget set), not zero: ↑ higher is better,
↓ lower is better, → closest to the level is best.</p>
<table>
<thead><tr><th>metric</th><th>better</th><th>level</th>{% for n in headline.names %}<th class="num">{{ n }}</th>
{% endfor %}</tr></thead>
<tbody>{% for r in headline.rows %}<tr><td title="{{ r.note }}">{{ r.key }}</td><td>{{ r.arrow }}</td>
<td>{{ r.level }}</td>{% for v in r["values"] %}<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table>
</section>
{% endif %}

{% if history %}
<section id="curves">
<h2>Training</h2>
<p>Training ended at step {{ stop }}{% if max_steps %} of {{ max_steps }}{% endif %}.</p>
{% for fig in figures.get("curves") or [] %}<div class="figure">{{ fig.svg | safe }}</div>{% endfor %}
{% if calibration %}
<h3>Calibration checks</h3>
{% if calibration.summary %}<dl class="settings">{% for k, v in calibration.summary.items() %}<dt>{{ k }}</dt>
<dd>{{ v }}</dd>{% endfor %}</dl>{% endif %}
{% if calibration.checks %}<table><thead><tr><th class="num">step</th>{% for c in calibration.columns %}
<th class="num">{{ c }}</th>{% endfor %}</tr></thead><tbody>{% for c in calibration.checks %}<tr>
<td class="num">{{ c.step }}</td>{% for v in c["values"] %}<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>{% endif %}
{% endif %}
</section>
{% endif %}

{% if mia %}
<section id="mia">
<h2>Membership inference: how far is the forget set from data never seen?</h2>
<p class="muted">Each attack scores every forget and holdout item (loss-like: lower = more familiar). An AUC of 0.5
means the attack cannot tell the forget set from data the model never saw; 1.0 means it is still plainly a member;
well below 0.5 means it was pushed past the never-seen level, which an attacker reads just as well.</p>
<table><thead><tr><th>attack</th>{% for m in mia.values() | first %}<th class="num">{{ m }}</th>{% endfor %}</tr>
</thead><tbody>{% for attack, models in mia.items() %}<tr><td>{{ attack }}</td>{% for v in models.values() %}
<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
{% if figures.get("mia") %}<div class="figure">{{ figures["mia"].svg | safe }}</div>{% endif %}
</section>
{% endif %}

{% if items %}
<section id="items">
<h2>Forget items: what the model still knows</h2>
{% if items.counts %}<p>Answers: {% for k, n in items.counts.items() %}<span class="kind kind-{{ k }}">{{ k }}
{{ n }}</span> {% endfor %}</p>{% endif %}
{% if items.rows_missing %}<p class="muted">The forget rows given do not match the evaluated items, so questions and
answer classes are not shown.</p>{% elif not items.has_rows %}<p class="muted">Questions and answer classes appear
when the forget rows are given (the recipe and the demo give them).</p>{% endif %}
<table><thead><tr><th class="num">#</th>{% if items.has_rows %}<th>question</th><th>reference answer</th>{% endif %}
<th class="num">P(answer) {{ items.before_name or "before" }}</th><th class="num">P(answer) unlearned</th>
{% if items.has_retain %}<th class="num">P(answer) retain</th>{% endif %}<th>generated answer</th>
{% if items.has_rows %}<th>class</th>{% endif %}</tr></thead>
<tbody>{% for r in items.rows %}<tr><td class="num">{{ r.index }}</td>{% if items.has_rows %}<td>{{ r.question }}</td>
<td>{{ r.answer }}</td>{% endif %}<td class="num">{{ r.before }}</td><td class="num">{{ r.after }}</td>
{% if items.has_retain %}<td class="num">{{ r.retain }}</td>{% endif %}<td>{{ r.generation }}</td>
{% if items.has_rows %}<td><span class="kind kind-{{ r.kind }}">{{ r.kind }}</span></td>{% endif %}</tr>
{% endfor %}</tbody></table>
</section>
{% endif %}

{% if robustness %}
<section id="robustness">
<h2>Robustness: does the forgetting hold under attack?</h2>
{% if figures.get("robustness") %}<div class="figure">{{ figures["robustness"].svg | safe }}</div>{% endif %}
<table><thead><tr><th>condition</th><th>model</th>{% for k in robustness["keys"] %}<th class="num">{{ k }}</th>
{% endfor %}</tr></thead><tbody>{% for r in robustness.rows %}<tr><td>{{ r.condition }}</td><td>{{ r.model }}</td>
{% for v in r["values"] %}<td class="num">{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
</section>
{% endif %}

{% if search %}
<section id="search">
<h2>Settings search</h2>
<p class="muted">{{ search.rule }}</p>
{% if figures.get("search") %}<div class="figure">{{ figures["search"].svg | safe }}</div>{% endif %}
<table><thead><tr><th class="num">trial</th><th>state</th><th class="num">J</th><th class="num">steps</th>
{% for n in search.names %}<th class="num">{{ n }}</th>{% endfor %}</tr></thead><tbody>{% for r in search.rows %}
<tr{% if r.best %} class="best"{% endif %}><td class="num">{{ r.trial }}</td><td>{{ r.state }}</td>
<td class="num">{{ r.value }}</td><td class="num">{{ r.steps }}</td>{% for v in r.params %}<td class="num">{{ v }}</td>
{% endfor %}</tr>{% endfor %}</tbody></table>
</section>
{% endif %}

<section id="reading">
<h2>How to read this report</h2>
<ul>
<li><strong>Forgotten</strong> means the forget set looks like data the model never saw: forget metrics near the
retain model's, membership-inference AUC near 0.5, PrivLeak near 0. Pushing them further (AUC far below 0.5, answer
probabilities far below the retain model's) is over-unlearning, visible to an attacker too.</li>
<li><strong>Kept</strong>: retain and general-knowledge metrics should stay at the target's level.</li>
<li><strong>Leak</strong>: a generated answer that states the true fact; <strong>refusal</strong>: "I don't know";
<strong>hallucination</strong>: a confident wrong value of the same kind; <strong>degenerate</strong>: no answer at
all (empty, repetitive), the usual sign of over-unlearning.</li>
<li>Small forget sets give wide uncertainty: with 40 items a Forget Quality p-value or an AUC moves visibly with a
single item.</li>
</ul>
</section>
</main>
</body>
</html>
"""


def render(context: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True)
    return env.from_string(_TEMPLATE).render(**context)
