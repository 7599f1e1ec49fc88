"""Raw OSQP (and Clarabel) driven straight from cvxpy's compiled DPP parameter mapping.

cvxpy compiles a DPP problem once into a ``ParamConeProg``: sparse tensors that map the
parameter vector ``[p; 1]`` affinely to the problem data. ``problem.solve()`` re-applies that
map on every call but also walks its reduction chain, re-checks the problem and unpacks the
solution in Python, which costs about as much as OSQP's own warm re-solve. Here the tensors are
condensed once into three sparse matrices, so a re-solve is

    vec = [p; 1] -> q = Q @ vec, Ax = A_map @ vec, u = U_map @ vec -> osqp.update -> osqp.solve

with a fixed sparsity pattern (entries that are structurally nonzero stay stored even when a
parameter makes them zero), so OSQP never needs a new setup.

The conversion follows cvxpy's own ``QpSolver.apply`` and OSQP interface: equality rows
(``Zero`` cones) come first and read ``A x + b = 0``; inequality rows (``NonNeg``) read
``A x + b >= 0``, that is ``-A x <= b``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

_CONSTANT_ID = -1  # cvxpy's lo.CONSTANT_ID: the column of the constant 1 in the parameter vector


@dataclass(frozen=True)
class QpData:
    """One instance of the QP: minimise 1/2 x'Px + q'x + offset s.t. l <= Ax <= u."""

    p_upper: sp.csc_matrix
    q: np.ndarray
    offset: float
    a: sp.csc_matrix
    l: np.ndarray
    u: np.ndarray
    n_eq: int


def _int32(matrix: sp.spmatrix) -> sp.csc_matrix:
    """CSC copy with int32 indices: OSQP's setup refuses cvxpy's int64 index arrays."""
    matrix = sp.csc_matrix(matrix)
    return sp.csc_matrix((matrix.data, matrix.indices.astype(np.int32), matrix.indptr.astype(np.int32)),
                         shape=matrix.shape)


def _structural_map(tensor: sp.spmatrix, n_rows: int, n_cols: int, keep: np.ndarray | None = None):
    """From a cvxpy data tensor (one row per entry of an ``n_rows x n_cols`` matrix in column-major
    order, one column per parameter-vector entry) return the CSR map of the structurally nonzero
    entries (sorted in CSC order) and their (row, col) positions."""
    coo = sp.coo_matrix(tensor)
    keep_entry = coo.data != 0
    flat_of_entry, param_of_entry = coo.row[keep_entry], coo.col[keep_entry]
    # Entries that any parameter can make nonzero, ascending: column-major = CSC order.
    flat, reduced_row = np.unique(flat_of_entry, return_inverse=True)
    reduced = sp.csr_matrix((coo.data[keep_entry], (reduced_row, param_of_entry)),
                            shape=(flat.size, coo.shape[1]))
    rows, cols = flat % n_rows, flat // n_rows
    if keep is not None:
        mask = keep(rows, cols)
        reduced, rows, cols = reduced[np.flatnonzero(mask)], rows[mask], cols[mask]
    return reduced, rows, cols


class CompiledQp:
    """The parameter -> (P, q, A, l, u) maps of one compiled cvxpy problem."""

    def __init__(self, problem: cp.Problem, parameters: dict[str, cp.Parameter],
                 variables: dict[str, cp.Variable]) -> None:
        data, _chain, _inverse = problem.get_problem_data(cp.OSQP)
        program = data["param_prob"]
        self.n = int(program.x.size)
        n = self.n
        self.n_eq = int(program.cone_dims.zero)
        m = int(program.constr_size)
        self.m = m

        # Parameter vector layout: each named Parameter's column span, in Fortran order.
        self._param_size = int(program.total_param_size)
        self._constant_col = int(program.param_id_to_col[_CONSTANT_ID])
        self._param_slices: dict[str, slice] = {}
        for name, parameter in parameters.items():
            if parameter.id not in program.param_id_to_col:
                continue  # a parameter that cancelled out of the problem data
            column = int(program.param_id_to_col[parameter.id])
            self._param_slices[name] = slice(column, column + parameter.size)
        self._var_slices: dict[str, slice] = {}
        for name, variable in variables.items():
            if variable.id not in program.var_id_to_col:
                raise RuntimeError(f"variable {name} not found in the compiled problem")
            column = int(program.var_id_to_col[variable.id])
            self._var_slices[name] = slice(column, column + variable.size)

        # q and the objective's constant.
        q_tensor = sp.csr_matrix(program.q)
        self._q_map = q_tensor[:n]
        self._offset_map = q_tensor[n]

        # A and the offsets b (last column of the [A | b] tensor).
        sign = np.where(np.arange(m) < self.n_eq, 1.0, -1.0)
        a_map, a_rows, a_cols = _structural_map(program.A, m, n + 1, keep=lambda r, c: c < n)
        self._a_map = sp.csr_matrix(sp.diags(sign[a_rows]) @ a_map)
        self._a_pattern = (a_rows.astype(np.int32),
                           np.searchsorted(a_cols, np.arange(n + 1)).astype(np.int32))
        b_map, b_rows, _ = _structural_map(program.A, m, n + 1, keep=lambda r, c: c == n)
        # u = -b on equality rows, +b on inequality rows; l = u on equalities, -inf otherwise.
        select = sp.csr_matrix((-sign[b_rows], (b_rows, np.arange(b_rows.size))), shape=(m, b_rows.size))
        self._u_map = sp.csr_matrix(select @ b_map)

        # P: cvxpy stores the full symmetric matrix of 1/2 x'Px; OSQP takes the upper triangle.
        if program.P is not None and program.P.nnz:
            p_map, p_rows, p_cols = _structural_map(program.P, n, n, keep=lambda r, c: r <= c)
        else:
            p_map, p_rows, p_cols = sp.csr_matrix((0, self._param_size + 1)), np.zeros(0, int), np.zeros(0, int)
        self._p_map = p_map
        self._p_pattern = (p_rows.astype(np.int32), np.searchsorted(p_cols, np.arange(n + 1)).astype(np.int32))
        self._vector = np.zeros(self._param_size + 1)
        self._vector[self._constant_col] = 1.0
        # Row blocks of the constraints, in the row order of A (cvxpy orders them by cone: the
        # equalities, then the inequalities), for shifting a dual solution in time.
        self._row_blocks: list[tuple[int, int]] = []
        row = 0
        for constraint in program.constraints:
            self._row_blocks.append((row, row + int(constraint.size)))
            row += int(constraint.size)
        if row != m:
            raise RuntimeError("constraint rows do not add up to the compiled problem's rows")

    def shift_indices(self, n_steps: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
        """Index arrays that move every per-slot variable and constraint ``slots`` slots earlier
        in time (the last value is repeated at the end); scalars stay. ``x[ix]``, ``y[iy]`` is
        the previous solution as a guess for a horizon that starts ``slots`` slots later."""
        def indices(size: int, blocks) -> np.ndarray:
            index = np.arange(size)
            for start, stop in blocks:
                if stop - start == n_steps:
                    index[start:stop] = np.minimum(np.arange(start, stop) + slots, stop - 1)
            return index

        return (indices(self.n, [(s.start, s.stop) for s in self._var_slices.values()]),
                indices(self.m, self._row_blocks))

    def vector(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """The parameter vector ``[p; 1]`` for named parameter values (shapes as the Parameters)."""
        vector = self._vector.copy()
        for name, span in self._param_slices.items():
            vector[span] = np.ravel(values[name], order="F")
        return vector

    def data(self, vector: np.ndarray) -> QpData:
        """Apply the maps: the QP data for one parameter vector."""
        p_upper = sp.csc_matrix((self._p_map @ vector, *self._p_pattern), shape=(self.n, self.n))
        a = sp.csc_matrix((self._a_map @ vector, *self._a_pattern), shape=(self.m, self.n))
        u = self._u_map @ vector
        l = u.copy()
        l[self.n_eq:] = -np.inf
        return QpData(p_upper, self._q_map @ vector, float((self._offset_map @ vector)[0]), a, l, u, self.n_eq)

    def split(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The primal solution per named variable."""
        return {name: x[span] for name, span in self._var_slices.items()}


@dataclass(frozen=True)
class SolveResult:
    """Outcome of one raw solve."""

    ok: bool
    status: str
    x: np.ndarray | None
    objective: float
    iterations: int
    solve_s: float


class OsqpSession:
    """A raw OSQP solver kept set up between solves; only changed data is pushed to it."""

    def __init__(self, compiled: CompiledQp, first: QpData, eps: float, **settings: float) -> None:
        import osqp

        self._osqp = osqp
        self._compiled = compiled
        self._solver = osqp.OSQP()
        # Settings chosen by measurement on the full home model (docs/mpc.md, bench/RESULTS.md):
        # eps (MpcSettings.osqp_eps, 1e-3 = 1 W on the kW-scale setpoints) matters most; the
        # duality-gap check stays on (off, objectives drifted up to 1.6 % from Clarabel's);
        # rho, alpha, sigma and scaling at OSQP's defaults (changing them moved iterations
        # within the noise); polishing off.
        self._settings = dict(eps_abs=eps, eps_rel=eps, max_iter=20_000, polishing=False,
                              warm_starting=True, verbose=False, adaptive_rho_interval=25,
                              check_termination=10)
        self._settings.update(settings)
        self._solver.setup(_int32(first.p_upper), first.q, _int32(first.a), first.l, first.u, **self._settings)
        self._last = first
        self.last_iterations = 0
        self.last_x: np.ndarray | None = None  # solution of the last successful solve
        self.last_y: np.ndarray | None = None

    def solve(self, data: QpData, time_limit_s: float,
              shift: tuple[np.ndarray, np.ndarray] | None = None) -> SolveResult:
        """Update what changed since the last solve and solve warm within ``time_limit_s``.
        ``shift``: index arrays from ``CompiledQp.shift_indices``; the warm start is then the last
        successful solution moved in time (primal and dual) instead of OSQP's last iterate."""
        last, update = self._last, {}
        if not np.array_equal(data.q, last.q):
            update["q"] = data.q
        if not (np.array_equal(data.l, last.l) and np.array_equal(data.u, last.u)):
            # Always both: OSQP 1.1 checks a lone new u against its stored l, which a matrix
            # update has unscaled and rescaled, so an equality row (l = u) can fail by one ulp
            # ("Problem data validation") and the solve runs on the old bounds.
            update["l"], update["u"] = data.l, data.u
        if not np.array_equal(data.p_upper.data, last.p_upper.data):
            update["Px"] = data.p_upper.data
        if not np.array_equal(data.a.data, last.a.data):
            update["Ax"] = data.a.data
        if update:
            self._solver.update(**update)
        if shift is not None and self.last_x is not None and self.last_y is not None:
            # After the data update (warm-starting before a matrix update gave different
            # iterations), the same order as the raw reference in bench/bench_mpc.py.
            self._solver.warm_start(x=self.last_x[shift[0]], y=self.last_y[shift[1]])
        self._solver.update_settings(time_limit=max(time_limit_s, 1e-3))
        self._last = data
        started = time.perf_counter()
        result = self._solver.solve(raise_error=False)
        elapsed = time.perf_counter() - started
        self.last_iterations = int(result.info.iter)
        ok = result.info.status_val == self._osqp.SolverStatus.OSQP_SOLVED
        if ok:
            self.last_x, self.last_y = np.array(result.x), np.array(result.y)
        else:
            # A failed iterate is a poor warm start for the next solve: start cold next time.
            self._solver.warm_start(x=np.zeros(self._compiled.n), y=np.zeros(self._compiled.m))
            self.last_x = self.last_y = None
        return SolveResult(ok, str(result.info.status), np.array(result.x) if ok else None,
                           float(result.info.obj_val) + data.offset, int(result.info.iter), elapsed)

    def restore(self, x: np.ndarray, y: np.ndarray) -> None:
        """Make (x, y), an earlier solution, the last solution again: the next solve warm-starts
        from it (shifted in time if asked)."""
        self.last_x, self.last_y = x, y
        self._solver.warm_start(x=x, y=y)

    def warm_start(self, x: np.ndarray, y: np.ndarray | None = None) -> None:
        """Seed the next solve with a primal (and dual) guess, e.g. the previous solution
        shifted in time."""
        if y is None:
            self._solver.warm_start(x=x)
        else:
            self._solver.warm_start(x=x, y=y)


def solve_clarabel(data: QpData, time_limit_s: float) -> SolveResult:
    """Solve ``data`` with Clarabel (interior point: robust, no warm start)."""
    import clarabel

    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.time_limit = max(time_limit_s, 1e-3)
    n_ineq = data.a.shape[0] - data.n_eq
    # Clarabel's form is Ax + s = b, s in cones: equalities in the zero cone, Ax <= u in R+.
    cones = [clarabel.ZeroConeT(data.n_eq), clarabel.NonnegativeConeT(n_ineq)]
    started = time.perf_counter()
    solver = clarabel.DefaultSolver(data.p_upper, data.q, data.a, data.u, cones, settings)
    solution = solver.solve()
    elapsed = time.perf_counter() - started
    status = str(solution.status)
    ok = status in ("Solved", "AlmostSolved")
    return SolveResult(ok, status, np.array(solution.x) if ok else None,
                       float(solution.obj_val) + data.offset, int(solution.iterations), elapsed)
