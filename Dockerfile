# Breakwater container image: build with dev dependencies, run with
# production ones only, as a non-root user, with node as PID 1 handling
# SIGTERM itself (the drain needs the signal; no --init required).
#
#   docker build -t breakwater .
#   docker run -p 127.0.0.1:3128:3128 -p 127.0.0.1:9901:9901 breakwater
#   (a mounted -v ./my.yaml:/etc/breakwater/breakwater.yaml sets listen: { host: 0.0.0.0 } itself)

FROM node:24-bookworm-slim AS build
WORKDIR /app
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
# npm ci builds dist/ (prepare).
RUN npm ci && npm prune --omit=dev

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production BREAKWATER_CONFIG=/etc/breakwater/breakwater.yaml
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config/breakwater.yaml /etc/breakwater/breakwater.yaml
# In a container the proxy port must answer on the container's address for
# `-p 3128:3128` to reach it: the image's copy of the config says 0.0.0.0
# (the file's own default is 127.0.0.1: SPEC §20.1). The build fails if the
# line it rewrites ever moves.
RUN sed -i 's/^listen: { host: 127\.0\.0\.1,/listen: { host: 0.0.0.0,/' /etc/breakwater/breakwater.yaml \
 && grep -q '^listen: { host: 0.0.0.0,' /etc/breakwater/breakwater.yaml
COPY config/breakwater.schema.json /etc/breakwater/breakwater.schema.json
# A numeric user: works whether or not the base image defines one.
USER 10001:10001
EXPOSE 3128 9901
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["run"]
