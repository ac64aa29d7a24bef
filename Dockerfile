# syntax=docker/dockerfile:1
# Multi-stage build: compile TypeScript with dev dependencies, ship only dist/ and production dependencies.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
# --ignore-scripts: the prepare step (tsc) runs below, once the sources are in.
RUN npm ci --ignore-scripts --omit=optional
COPY src ./src
RUN npm run build && npm prune --omit=dev --omit=optional

FROM node:20-bookworm-slim
ENV NODE_ENV=production
# In a container the listener must face the pod network; a config file can still narrow it via PGTP_LISTEN_HOST.
ENV PGTP_LISTEN_HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
# The image's built-in unprivileged user; the proxy needs no privileges (listen on 6432, not below 1024).
USER node
EXPOSE 6432 9930
# Mount the real config at /etc/pg-tenant-proxy/proxy.yaml; secrets come best from PGTP_* variables.
ENTRYPOINT ["node", "--enable-source-maps", "dist/cli/main.js"]
CMD ["start", "--config", "/etc/pg-tenant-proxy/proxy.yaml"]
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["node", "-e", "require('net').connect(process.env.PGTP_LISTEN_PORT||6432,'127.0.0.1').on('connect',function(){this.end();process.exit(0)}).on('error',()=>process.exit(1))"]
