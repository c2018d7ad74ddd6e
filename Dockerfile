FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir ".[server]"
RUN useradd --system --uid 10001 realtime
USER realtime
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)"]
ENTRYPOINT ["fastapi-realtime"]
CMD ["serve", "--config", "/etc/fastapi-realtime/config.toml", "--host", "0.0.0.0", "--port", "8000"]
