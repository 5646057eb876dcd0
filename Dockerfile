# The amlbatch worker image: Node.js 20 on Debian bookworm (glibc, because the Temporal SDK's native module has no
# musl/Alpine build) with a Python 3.11 virtual environment for the entry scripts the local backend runs.
#
#   docker build -t amlbatch-worker .
#   docker compose up          # a Temporal server with PostgreSQL, its Web UI and this worker (docker-compose.yml)

# ---- build: compile TypeScript to dist/ ----
FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY common ./common
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker
COPY client ./client
RUN npx tsc -p .

# ---- runtime: production npm packages, compiled code, the scoring package and its Python environment ----
FROM node:20.20.2-bookworm-slim
# Debian bookworm's python3 is 3.11, the version the scoring package is tested with.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
  && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY scoring/requirements.txt ./scoring/requirements.txt
RUN python3 -m venv /opt/amlbatch-python \
  && /opt/amlbatch-python/bin/pip install --no-cache-dir --disable-pip-version-check -r scoring/requirements.txt
COPY scoring ./scoring
# The local runner starts this Python shim from the project root, next to the compiled code in dist/.
COPY activities/backends/local/runner/prs_worker.py ./activities/backends/local/runner/prs_worker.py
COPY --from=build /app/dist ./dist

# The worker runs as the image's unprivileged `node` user; the workspace is a volume in docker-compose.yml.
RUN mkdir -p /var/lib/amlbatch/workspace && chown -R node:node /var/lib/amlbatch
USER node

ENV AMLBATCH_PYTHON=/opt/amlbatch-python/bin/python \
  AMLBATCH_LOCAL_WORKSPACE=/var/lib/amlbatch/workspace \
  AMLBATCH_TASK_QUEUE=amlbatch \
  AMLBATCH_METRICS_BIND_ADDRESS=0.0.0.0:9464
EXPOSE 9464

# SIGTERM starts a graceful shutdown: polling stops and running activities get the worker's shutdownGraceTime.
STOPSIGNAL SIGTERM
CMD ["node", "dist/worker/main.js"]
