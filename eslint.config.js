// ESLint flat config: type-aware rules that find real bugs (unhandled promises, promises passed where a
// callback's result is ignored, awaiting non-promises, unused code); formatting is Prettier's job.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/',
      '**/dist/',
      'coverage/',
      'packages/explorer/page/dist/',
      'scripts/interop/go/',
      '**/*.d.ts',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: { ...globals.node },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // `let x!: T` declared before closures that read it, assigned once later, is deliberate
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // the rules this config exists for
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true },
      ],
      // JSON bodies, parsed config and test fixtures are `any` by nature and checked where used; the no-unsafe-*
      // family flags every use of them (thousands of hits) without finding bugs the compiler misses
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // `${n}` with a bigint or number is how sizes are written into messages and URLs
      '@typescript-eslint/restrict-template-expressions': 'off',
      // an async function without await is how an interface's promise-returning method is implemented synchronously
      '@typescript-eslint/require-await': 'off',
      // rejecting with what was caught (unknown) is the point of a pass-through
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
      // the hot parsers (tlog json, log-server canon and jsonscan) throw small {status, message} records on
      // purpose: no stack to capture per rejected entry; callers turn them into typed errors
      '@typescript-eslint/only-throw-error': 'off',
      // String(x) of a parsed JSON field or a form value is deliberate; every hit was an `unknown` field
      '@typescript-eslint/no-base-to-string': 'off',
    },
  },
  {
    // scripts and tests are type-checked through tsconfig.test.json (they are in no package's build)
    files: ['packages/*/test/**/*.ts', 'test/**/*.ts', 'scripts/**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: false, project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // chai's property assertions (`.to.be.not.empty`, `.not.NaN`) are expression statements
      '@typescript-eslint/no-unused-expressions': 'off',
      // helpers hand back `{ close(): Promise<void> }` objects made of closures, pushed as `closers.push(x.close)`
      '@typescript-eslint/unbound-method': 'off',
      // generators filter control characters out on purpose
      'no-control-regex': 'off',
    },
  },
  {
    // the explorer's web page runs in the browser
    files: ['packages/explorer/page/**/*.ts'],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    // plain JavaScript (bin scripts, build scripts, this file): no type information
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
