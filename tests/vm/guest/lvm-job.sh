# Run in the test VM by /ose-vm-init (cwd: the read-only repository share): the LVM
# backend's tests against real LVM on the second disk, junit XML to the results share.
export PYTHONPATH=/ose/repo:/ose/site PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
export OSE_VM_LVM_DISK=/dev/vdb
exec python3 -m pytest -p no:cacheprovider -v -rA --color=no --junitxml=/ose/out/junit.xml \
    tests/vm/guest/lvm_guest.py
