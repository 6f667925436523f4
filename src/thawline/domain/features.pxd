# Augmenting declarations for the compiled build of features.py (tools/build_accel.py).
#
# features.py stays plain Python and is what runs without a C compiler; when it is compiled
# with Cython these declarations make AccountState an extension type with C-typed fields and
# type the hot methods' locals. Python semantics are kept (no cdivision, bounds checks on), so
# the compiled and the plain module compute the same floats: tests/unit/test_features_golden.py
# checks both against the stored world.
cimport cython
from cpython.datetime cimport datetime


cdef class AccountState


cdef class Features(dict):
    cdef public object _event
    cdef public double _now
    cdef public double _small
    cdef public AccountState _state


cdef class AccountState:
    cdef public object account_id
    cdef public list times
    cdef public list amounts
    cdef public list parties
    cdef public list credits
    # One entry per window (WINDOWS has five; tests/unit/test_features_accel.py checks the sizes).
    # Python code outside the class reads these as lists (copies).
    cdef public Py_ssize_t starts[5]
    cdef public double sums[5]
    cdef public double heads[5]
    cdef public double last_time
    cdef public long small_10m
    cdef public double small
    cdef public dict parties_1h
    cdef public list recent_amounts
    cdef public long history_txns
    cdef public long day
    cdef public long today_count
    cdef public object daily_ewma  # an int until the first day closes, then a float (as in Python)
    cdef public long days_seen
    cdef public list hours
    cdef public long history_events
    cdef public set devices
    cdef public set ips
    cdef public set counterparties
    cdef public bint learning
    cdef public object learn_device
    cdef public bint learn_unbind
    cdef public object learn_ip
    cdef public object learn_party
    cdef public object learnt_device
    cdef public object learnt_ip
    cdef public object learnt_party
    cdef public list ip_times
    cdef public list ip_seen
    cdef public Py_ssize_t ip_head
    cdef public dict ip_counts
    cdef public object login_failures
    cdef public object profile_changes
    cdef public object near_threshold
    cdef public object kyc_level
    cdef public double newest

    @cython.locals(data=dict, at=datetime, hour=long, ts=double, before=double, now=double, edge=double,
                   n_ips=Py_ssize_t, day=long, amount=double, small=double, left=Py_ssize_t,
                   head=Py_ssize_t, n=Py_ssize_t, ip_times=list, ip_seen=list, counts=dict,
                   recent=list, f=Features)
    cpdef Features observe(self, object event, object ranges, object thresholds)

    cpdef _learn(self)

    # _add and slide index the window lists only inside their bounds (the loops test them first, and
    # never with a negative index): tools/build_accel.py compiles these two without bounds checks.
    @cython.locals(n=Py_ssize_t, i=Py_ssize_t, w=Py_ssize_t, span=double, total=double, edge=double,
                   now=double, was_10m=Py_ssize_t, was_1h=Py_ssize_t, small=double, below=long,
                   first=Py_ssize_t, left=Py_ssize_t, j=Py_ssize_t, parties=list, head=double,
                   times=list, amounts=list, counts=dict)
    cpdef _add(self, double ts, double amount, object party, bint credit, double before)

    @cython.locals(i=Py_ssize_t, w=Py_ssize_t, total=double, n=Py_ssize_t, start=Py_ssize_t, times=list)
    cpdef _insert(self, double ts, double amount, object party, bint credit)

    @cython.locals(end=Py_ssize_t, n=Py_ssize_t, edge=double, total=double, small=double, below=long,
                   a=double, left=Py_ssize_t, times=list, amounts=list, counts=dict, parties=list)
    cpdef slide(self, Py_ssize_t w, double now)
