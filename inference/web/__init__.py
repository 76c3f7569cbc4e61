"""The web demo (gradio) and the REST API (FastAPI) over the registry, for inference/web_demo.py and
evaluate/user_study.py serve.

    settings.py   what the server is told (host, models, limits, token, study)
    catalog.py    the served models, read from the registry, and what each call takes
    limits.py     per-model bounded queue and concurrency (503 + Retry-After), per-request caps (413)
    service.py    the work behind every tab and endpoint, and the equivalent command line
    api.py        /models, /generate, /interpolate, /health, /files: pydantic bodies, JSON errors
    middleware.py the API token and the request body cap, in front of everything
    tabs.py       the demo's tabs (generate, interpolate, latents, camera, video)
    study.py      the A/B study's systems and trials; votes.py its SQLite store; study_tab.py its tab
    app.py        create_app (the API with the demo mounted at /) and serve (uvicorn)
"""
