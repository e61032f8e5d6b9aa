# Test only: Debian's Mosquitto 2.0 with eclipse-mosquitto's layout (/mosquitto/config, data,
# log; started as root, drops to user mosquitto), built FROM the debootstrapped DEBIAN_IMAGE.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends mosquitto mosquitto-clients \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log \
    && chown -R mosquitto:mosquitto /mosquitto/data /mosquitto/log
EXPOSE 1883
CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
