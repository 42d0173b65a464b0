"""A gevent.pywsgi host as a user writes one: ``python pywsgi_host.py PORT [--patch]`` serves ``wsgi:app``.

With ``--patch`` it calls ``gevent.monkey.patch_all()`` first, as gevent's
docs say; without it, it imports gevent's server unpatched and ``wsgi.py``
must patch (``app.runtime.hosts``).
"""

import sys

if "--patch" in sys.argv:
    from gevent import monkey

    monkey.patch_all()

from gevent.pywsgi import WSGIServer  # noqa: E402

from wsgi import app  # noqa: E402

WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=None).serve_forever()
