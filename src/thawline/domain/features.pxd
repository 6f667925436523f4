# Augmenting declarations for the compiled build of features.py (tools/build_accel.py).
#
# features.py stays plain Python and is what runs without a C compiler; when it is compiled
# with Cython these declarations make AccountState an extension type with C-typed fields and
# type the hot methods' locals. Python semantics are kept (no cdivision, bounds checks on), so
# the compiled and the plain module compute the same floats: tests/unit/test_features_golden.py
# checks both against the stored world.
cimport cython


cdef class AccountState:
    cdef public object account_id
    cdef public list times
    cdef public list amounts
    cdef public list parties
    cdef public list credits
    cdef public list starts
    cdef public list sums
    cdef public long small_10m
    cdef public double small
    cdef public dict parties_1h
    cdef public object recent_amounts
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
    cdef public object pending
    cdef public object recent_ips
    cdef public dict ip_counts
    cdef public object login_failures
    cdef public object profile_changes
    cdef public object near_threshold
    cdef public object kyc_level
    cdef public double newest

    @cython.locals(hour=long, ts=double, before=double, now=double, edge=double, n_ips=Py_ssize_t,
                   day=long, amount=double, small=double, left=Py_ssize_t)
    cpdef object observe(self, object event, object ranges, object thresholds)

    cpdef _learn(self)

    # _add and slide index the window lists only inside their bounds (the loops test them first, and
    # never with a negative index): tools/build_accel.py compiles these two without bounds checks.
    @cython.locals(n=Py_ssize_t, i=Py_ssize_t, w=Py_ssize_t, span=double, total=double, edge=double,
                   now=double, was_10m=Py_ssize_t, was_1h=Py_ssize_t, small=double, below=long,
                   a=double, first=Py_ssize_t, left=Py_ssize_t)
    cpdef _add(self, double ts, double amount, object party, bint credit, double before)

    @cython.locals(i=Py_ssize_t, w=Py_ssize_t, total=double)
    cpdef _insert(self, double ts, double amount, object party, bint credit)

    @cython.locals(start=Py_ssize_t, end=Py_ssize_t, n=Py_ssize_t, edge=double, total=double,
                   small=double, below=long, a=double, left=Py_ssize_t)
    cpdef slide(self, Py_ssize_t w, double now)
