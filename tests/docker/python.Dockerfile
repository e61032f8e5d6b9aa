# Test only: a stand-in for python:3.11-slim where no registry is reachable, built FROM the
# base image the test debootstraps (DEBIAN_IMAGE). Debian's python3 in a venv that comes first
# on PATH, so `python` and `pip` mean what they mean in the public image. pip trusts the CA
# bundle the host's pip trusts (host-ca.crt, copied in by the test: the machine's egress may
# go through a proxy with its own CA), which images built FROM this one inherit.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/python
COPY host-ca.crt /etc/ssl/certs/host-ca.crt
ENV PATH=/opt/python/bin:$PATH PIP_CERT=/etc/ssl/certs/host-ca.crt
