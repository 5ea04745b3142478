# The image every cluster node runs (cluster.yaml `docker.image`): Python 3.11, the project's
# dependencies installed from requirements.lock (torch's CUDA 13.0 build, Ray at the lock's exact
# version) once, at build time, so autoscaled workers start without reinstalling ~5 GB.
#
#   docker build -t docker.io/YOUR_NAME/dpda:0.1.0-cu130 .
#   docker push docker.io/YOUR_NAME/dpda:0.1.0-cu130       # then set it in cluster.yaml
#
# The base is NVIDIA's CUDA 13.0 image: torch's wheels bring their own CUDA libraries, and the
# base image's NVIDIA_REQUIRE_CUDA (cuda>=13.0) makes the NVIDIA container runtime refuse to start
# on a host whose driver is too old (< 580) with a message naming the requirement, instead of
# torch failing later. tests/test_cluster.py checks that this tag's CUDA version is the one the
# lock's torch was built for.
FROM nvidia/cuda:13.0.0-base-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/dpda/venv PATH=/opt/dpda/venv/bin:$PATH
# python3.11 for dpda; libsndfile for soundfile; rsync, openssh-client and sudo for Ray's cluster
# launcher, which syncs files into the container and runs its commands there.
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv libsndfile1 rsync openssh-client sudo ca-certificates tmux \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv $VIRTUAL_ENV

WORKDIR /opt/dpda/src
# Dependencies first (the layer that holds torch is rebuilt only when the lock changes).
COPY requirements.lock /opt/dpda/requirements.lock
RUN pip install --upgrade 'pip>=24' && pip install -r /opt/dpda/requirements.lock
COPY . /opt/dpda/src
RUN pip install --no-deps --no-build-isolation -e /opt/dpda/src && dpda doctor
