"""productpage's HTML: the Bootstrap-era Bookinfo page (stable star markup tests can count) and the index page."""

from __future__ import annotations

from typing import Any

import jinja2
from markupsafe import escape

_env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)

STATIC: dict[str, str] = {
    "bookinfo.css": """
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #222; }
.navbar { background: #222; color: #ddd; padding: 12px 24px; display: flex; justify-content: space-between; }
.navbar a, .navbar button { color: #ddd; background: none; border: 0; font: inherit; cursor: pointer; }
.container { max-width: 1000px; margin: 0 auto; padding: 16px 24px; }
.row { display: flex; gap: 32px; flex-wrap: wrap; }
.col { flex: 1 1 400px; }
.text-center { text-align: center; }
.text-primary { color: #337ab7; }
blockquote { border-left: 4px solid #eee; margin: 0 0 16px; padding: 8px 16px; }
.glyphicon-star::before { content: "\\2605"; }
.glyphicon-star-empty::before { content: "\\2606"; }
.glyphicon { font-style: normal; font-size: 1.2em; }
.error { color: #a94442; }
.login { display: inline-flex; gap: 6px; }
.login input { width: 9em; }
""",
}

_PRODUCTPAGE = _env.from_string("""<!DOCTYPE html>
<html>
<head>
<title>Simple Bookstore App</title>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="static/bookinfo.css">
</head>
<body>
<nav class="navbar" id="navbar">
  <a class="navbar-brand" href="#">BookInfo Sample</a>
  {% if user %}
  <div class="navbar-user"><span id="signed-in-user">{{ user }}</span>
    <a class="btn btn-default" href="logout" id="sign-out">sign out</a></div>
  {% else %}
  <form class="login" method="post" action="login" id="sign-in" name="login_form">
    <input type="text" name="username" placeholder="User Name" aria-label="User Name">
    <input type="password" name="passwd" placeholder="Password" aria-label="Password">
    <button type="submit" class="btn btn-default">Sign in</button>
  </form>
  {% endif %}
</nav>
<div class="container">
  <div class="row">
    <div class="col text-center">
      <h1 class="text-center text-primary">{{ product.title }}</h1>
      <p>{{ product.descriptionHtml | safe }}</p>
    </div>
  </div>
  <div class="row">
    <div class="col" id="details">
{% if details and 'author' in details %}
      <h4 class="text-center text-primary">Book Details</h4>
      <dl>
        <dt>Type:</dt><dd>{{ details.type }}</dd>
        <dt>Pages:</dt><dd>{{ details.pages }}</dd>
        <dt>Publisher:</dt><dd>{{ details.publisher }}</dd>
        <dt>Language:</dt><dd>{{ details.language }}</dd>
        <dt>ISBN-10:</dt><dd>{{ details['ISBN-10'] }}</dd>
        <dt>ISBN-13:</dt><dd>{{ details['ISBN-13'] }}</dd>
      </dl>
{% else %}
      <h4 class="text-center text-primary error">Error fetching product details!</h4>
      {% if details and details.error %}<p class="error">{{ details.error }}</p>{% endif %}
{% endif %}
    </div>
    <div class="col" id="reviews">
{% if reviews and reviews.reviews is defined %}
      <h4 class="text-center text-primary">Book Reviews</h4>
  {% for review in reviews.reviews %}
      <blockquote class="review">
        <p>{{ review.text }}</p>
        <small>{{ review.reviewer }}</small>
    {% if review.rating %}
      {% if review.rating.stars %}
        <font color="{{ review.rating.color }}" class="stars stars-{{ review.rating.color }}">
        {% for n in range(review.rating.stars) %}
          <span class="glyphicon glyphicon-star"></span>
        {% endfor %}
        {% for n in range(5 - review.rating.stars) %}
          <span class="glyphicon glyphicon-star-empty"></span>
        {% endfor %}
        </font>
      {% elif review.rating.error %}
        <p class="rating-error"><i>{{ review.rating.error }}</i></p>
      {% endif %}
    {% endif %}
      </blockquote>
  {% endfor %}
  {% if reviews.podname %}
      <dl class="served-by"><dt>Reviews served by:</dt>
        <u>{{ reviews.podname }}</u>
        {% if reviews.clustername and reviews.clustername != "null" %}
        on cluster <u>{{ reviews.clustername }}</u>
        {% endif %}
      </dl>
  {% endif %}
{% else %}
      <h4 class="text-center text-primary error">Error fetching product reviews!</h4>
      {% if reviews and reviews.error %}<p class="error">{{ reviews.error }}</p>{% endif %}
{% endif %}
    </div>
  </div>
</div>
</body>
</html>
""")

_INDEX = _env.from_string("""<!DOCTYPE html>
<html>
<head><title>Simple Bookstore App</title><meta charset="utf-8">
<link rel="stylesheet" href="static/bookinfo.css"></head>
<body>
<div class="container">
<h3>Hello! This is a simple bookstore application consisting of three services as shown below</h3>
{{ tree | safe }}
<h4>Click on one of the links below to auto generate a request to the backend as a real user or a tester</h4>
<p><a href="/productpage?u=normal">Normal user</a></p>
<p><a href="/productpage?u=test">Test user</a></p>
</div>
</body>
</html>
""")

NOT_FOUND = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling "
    "and try again.</p>\n"
)


def _table(value: Any) -> str:
    """A json2html-style table of nested dicts/lists."""
    if isinstance(value, dict):
        rows = "".join(
            f"<tr><th>{escape(k)}</th><td>{_table(v)}</td></tr>" for k, v in value.items()
        )
        return f'<table border="1">{rows}</table>'
    if isinstance(value, list):
        return "<ul>" + "".join(f"<li>{_table(v)}</li>" for v in value) + "</ul>"
    return str(escape(value))


def render_productpage(*, product: dict[str, Any], details: dict[str, Any], reviews: dict[str, Any],
                       user: str | None) -> str:
    return _PRODUCTPAGE.render(product=product, details=details, reviews=reviews, user=user)


def render_index(service_tree: dict[str, Any]) -> str:
    return _INDEX.render(tree=_table(service_tree))
