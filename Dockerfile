# One image for every microstate: `docker run IMAGE serve profile` (or session, flags, ...).
# Build from the repository root: docker build -t microstate .
FROM python:3.12-slim AS wheels
WORKDIR /src
COPY generated generated
COPY clients clients
COPY servers servers
RUN pip wheel --no-cache-dir --wheel-dir /wheels ./generated ./clients "./servers[fast]"

FROM python:3.12-slim
# A fixed non-root uid, so Kubernetes can check runAsNonRoot and volumes can be chowned to it.
RUN useradd --system --uid 10001 --home-dir /var/lib/microstate --create-home microstate
COPY --from=wheels /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "microstate-server[fast]" && rm -rf /wheels
USER 10001
WORKDIR /var/lib/microstate
# In a container the server must listen beyond loopback; its data (embedded SQLite, keys) goes to the volume.
ENV MICROSTATE_HOST=0.0.0.0 \
    MICROSTATE_DATA_DIR=/var/lib/microstate \
    MICROSTATE_LOG_FORMAT=json
VOLUME /var/lib/microstate
EXPOSE 50051 50052 50053 50054 50055
ENTRYPOINT ["microstate"]
CMD ["serve", "profile"]
